"""A missing test dependency fails the test that needs it, naming the install command; it never skips."""

from __future__ import annotations

import pytest

from tests import browser, peer_modules


def test_a_missing_setup_module_fails_with_its_install_command(monkeypatch) -> None:
    monkeypatch.setitem(peer_modules.SETUP, "no_such_module_saelab", "the x extra: `just setup`")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_saelab is missing: the x extra: `just setup`"):
        peer_modules.needed("no_such_module_saelab")


def test_a_missing_browser_fails_naming_setup_browser(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(pytest.fail.Exception, match="just setup-browser"):
        browser.chrome()
