"""`saelab inspect feature`: one latent's dashboard in the terminal (rich), from the same computation as the site."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from saelab.inspect.site import Dashboards

BARS = " ▁▂▃▄▅▆▇█"


def render(d: Dashboards, latent: int) -> Group:
    """Statistics, histogram sparkline, logit tables, neighbours and highlighted contexts of `latent`."""
    s = d.stats
    r = int((s.latents == latent).nonzero()[0][0])
    n = max(s.n_tokens, 1)
    head = Table.grid(padding=(0, 2))
    head.add_row("density", f"{s.count[latent] / n:.4%} ({s.count[latent]:,} of {s.n_tokens:,} tokens)")
    head.add_row("max / mean activation", f"{s.max[latent]:.4g} / {s.mean[latent]:.4g}")
    hist = s.hist[latent]
    spark = "".join(BARS[int(round(8 * c / max(hist.max(), 1)))] for c in hist)
    head.add_row("histogram (0, max]", spark)
    tables = Table.grid(padding=(0, 4))
    cols = []
    if d.lens is not None:
        cols += [
            _ranked("top logits +", d.lens.positive, r, d.vocab),
            _ranked("top logits -", d.lens.negative, r, d.vocab),
        ]
    cols.append(_ranked("nearest (cos)", d.cosine, r, None))
    if d.aip is not None:
        cols.append(_ranked("nearest (AIP)", d.aip, r, None))
    tables.add_row(*cols)
    left = d.meta["left"]
    top = [
        _context(s.top, r, j, d.vocab, float(s.max[latent]), left)
        for j in range(s.top.token.shape[1])
        if s.top.token[r, j] >= 0
    ]
    body = Group(*top) if top else Text("never fired on the scanned tokens", style="italic")
    return Group(Panel(head, title=f"latent {latent}"), tables, Panel(body, title="top activating contexts"))


def print_latent(d: Dashboards, latent: int, console: Console | None = None) -> None:
    (console or Console()).print(render(d, latent))


def _ranked(title: str, x, r: int, vocab) -> Table:
    t = Table(title=title, show_header=False, box=None)
    for i, v in zip(x.index[r], x.value[r], strict=True):
        t.add_row(repr(vocab[i]) if vocab is not None else str(i), f"{v:.3g}")
    return t


def _context(c, r: int, j: int, vocab, mx: float, centre: int) -> Text:
    text = Text(f"{c.value[r, j]:8.3g}  ")
    for col, (tid, a) in enumerate(zip(c.ids[r, j], c.acts[r, j], strict=True)):
        if tid < 0:
            continue
        level = min(max(a / (mx or 1.0), 0.0), 1.0)
        red = int(255 * level)
        style = f"on rgb({red // 1},{int(red * 0.5)},0)" if level > 0 else ""
        if col == centre:
            style += " bold underline"
        text.append(vocab[tid].replace("\n", "↵"), style=style.strip() or None)
    return text
