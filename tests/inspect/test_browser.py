"""The report in headless Chromium (Debian's chromium + chromedriver, driven by Selenium; installed by
`just setup-browser`): the index lists every latent, search filters it, sorting works, a latent page shows
highlighted tokens and its logit tables. Screenshots go to $SAELAB_SCREENSHOTS, default
/tmp/saelab-inspect-screenshots/."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from saelab.inspect.serve import address, make_server
from tests.browser import chrome

SHOTS = Path(os.environ.get("SAELAB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "saelab-inspect-screenshots")


@pytest.fixture(scope="module")
def browser():
    driver = chrome("1400,1000")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(report):
    """The report served by `saelab inspect serve`'s server on a free port of 127.0.0.1."""
    server = make_server(report, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield address(server).removesuffix("index.html")
    server.shutdown()
    server.server_close()


def _ready(driver, timeout: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _index_data(report: Path) -> dict:
    text = (report / "data" / "index.js").read_text()
    return json.loads(text[text.index(",") + 1 : text.rindex(")")])


def test_index_lists_every_latent_and_search_filters(browser, site, report) -> None:
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(site + "index.html")
    _ready(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#latents tbody tr")
    assert len(rows) == 200 and browser.find_element(By.ID, "count").text == "200 of 200 latents"
    assert sorted(int(r.get_attribute("data-latent")) for r in rows) == list(range(200))
    browser.save_screenshot(str(SHOTS / "index.png"))

    idx = _index_data(report)
    word = next(t.strip() for tokens in idx["top_tokens"] for t in tokens if t.strip().isalpha() and len(t) > 3)
    want = {
        lat
        for lat, a, b in zip(idx["latent"], idx["top_tokens"], idx["top_logits"], strict=True)
        if word.lower() in " ".join([str(lat), *a, *b]).lower()
    }
    search = browser.find_element(By.ID, "search")
    search.send_keys(word)
    shown = {int(r.get_attribute("data-latent")) for r in browser.find_elements(By.CSS_SELECTOR, "#latents tbody tr")}
    assert shown == want and 0 < len(shown) < 200
    browser.save_screenshot(str(SHOTS / "index-search.png"))
    search.clear()
    search.send_keys("137")
    shown = [int(r.get_attribute("data-latent")) for r in browser.find_elements(By.CSS_SELECTOR, "#latents tbody tr")]
    assert 137 in shown and len(shown) < 10  # the id, plus latents whose tokens contain "137"

    search.clear()
    search.send_keys(" ")
    browser.find_element(By.CSS_SELECTOR, "th[data-key=max]").click()  # largest max activation first
    first = int(browser.find_element(By.CSS_SELECTOR, "#latents tbody tr").get_attribute("data-latent"))
    assert idx["max"][idx["latent"].index(first)] == max(idx["max"])


def test_latent_page_highlights_tokens_and_lists_logits(browser, site, report) -> None:
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    idx = _index_data(report)
    lat = idx["latent"][max(range(len(idx["latent"])), key=lambda i: idx["count"][i])]  # a latent that fires
    browser.get(site + f"latent.html?i={lat}")
    _ready(browser)
    assert browser.find_element(By.ID, "title").text == f"Latent {lat}"
    contexts = browser.find_elements(By.CSS_SELECTOR, "#top .ctx")
    assert len(contexts) == 6  # top_k of the report
    centres = browser.find_elements(By.CSS_SELECTOR, "#top .ctx span.centre")
    assert len(centres) == 6
    colour = centres[0].value_of_css_property("background-color")
    assert colour.startswith("rgba(230, 126, 34") and not colour.endswith(", 0)")  # highlighted by activation
    pos = browser.find_elements(By.CSS_SELECTOR, "#logits-pos tr")
    neg = browser.find_elements(By.CSS_SELECTOR, "#logits-neg tr")
    assert len(pos) == 10 and len(neg) == 10
    assert float(pos[0].find_elements(By.TAG_NAME, "td")[1].text) > float(
        neg[0].find_elements(By.TAG_NAME, "td")[1].text
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#hist svg rect")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbours a")) == 16  # 8 by cosine, 8 by AIP
    browser.save_screenshot(str(SHOTS / "latent.png"))
    browser.execute_script("document.getElementById('top').scrollIntoView()")
    browser.save_screenshot(str(SHOTS / "latent-contexts.png"))


def test_pages_open_from_disk_without_a_server(browser, report, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    copy = shutil.copytree(report, tmp_path / "r")
    browser.get(copy.resolve().as_uri() + "/index.html")
    _ready(browser)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#latents tbody tr")) == 200
