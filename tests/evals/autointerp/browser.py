"""A latent page of a report in headless Chromium (Debian's chromium + chromedriver, via Selenium; installed by
`just setup-browser`; tests/browser.py fails the test without them), served on 127.0.0.1."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from saelab.inspect.serve import address, make_server
from tests.browser import chrome


@contextlib.contextmanager
def open_page(report: Path, page: str, screenshot: Path | None = None, size: str = "1300,1000") -> Iterator:
    """The driver on `page` of `report` once the page says it is ready; a screenshot saved when asked."""
    from selenium.webdriver.support.ui import WebDriverWait

    server = make_server(report, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = chrome(size)
    try:
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
