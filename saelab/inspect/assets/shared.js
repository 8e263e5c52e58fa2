// saelab report pages' shared loader: data files are `saelabData(name, json)` scripts (so file:// works),
// loaded on demand by `saelabData.load(name)`; `esc` and `show` make text safe to put in HTML.
"use strict";

const saelabShared = (() => {
  const loaded = {};
  const waiting = {};
  window.saelabData = (name, obj) => {
    loaded[name] = obj;
    (waiting[name] || []).forEach((resolve) => resolve(obj));
  };

  function load(name) {
    if (name in loaded) return Promise.resolve(loaded[name]);
    return new Promise((resolve, reject) => {
      (waiting[name] = waiting[name] || []).push(resolve);
      const s = document.createElement("script");
      s.src = `data/${name}.js`;
      s.onerror = () => reject(new Error(`cannot load data/${name}.js`));
      document.head.appendChild(s);
    });
  }

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const show = (t) => esc(String(t).replace(/\n/g, "↵").replace(/\t/g, "⇥"));
  return { load, esc, show };
})();
