"""Headless Chromium for the page tests (Debian's chromium + chromedriver, driven by Selenium; `just test` installs
them through `just setup-browser`). A missing browser, driver or Selenium fails the test, naming the install
command: a page test that skipped would hide a broken page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peer_modules import needed

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def chrome(size: str = "1400,1000"):
    """A headless Chrome driver at window `size` (page load timeout 60 s); the caller quits it."""
    if not CHROMIUM.exists() or not DRIVER.exists():
        pytest.fail(f"{CHROMIUM} or {DRIVER} is absent: install them with `just setup-browser`", pytrace=False)
    webdriver = needed("selenium.webdriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(DRIVER)))
    driver.set_page_load_timeout(60)
    return driver
