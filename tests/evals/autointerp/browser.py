"""A latent page of a report in headless Chromium (Debian's chromium + chromedriver, via Selenium; installed by
`just setup-browser`, skipped without them as tests/inspect/test_browser.py is), served on 127.0.0.1."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from saelab.inspect.serve import address, make_server

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@contextlib.contextmanager
def open_page(report: Path, page: str, screenshot: Path | None = None, size: str = "1300,1000") -> Iterator:
    """The driver on `page` of `report` once the page says it is ready; a screenshot saved when asked."""
    if not CHROMIUM.exists() or not DRIVER.exists():
        pytest.skip(f"{CHROMIUM} or {DRIVER} is absent: install them with `just setup-browser`")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: `just setup-browser`")
    from selenium.webdriver.support.ui import WebDriverWait

    server = make_server(report, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(DRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.get(address(server).removesuffix("index.html") + page)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        yield driver
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
