"""Identification (document 000): sessionStorage.extension and flattr-installed on
https://flattr.com; flattr-uninstalled, the key removed and the listeners gone when
the extension is disabled (Chromium), removed (Firefox) or reloaded."""

from __future__ import annotations

import pytest

from tests.support.e2e import (
    EXTENSION_ID,
    GECKO_ID,
    MANIFEST_VERSION,
    BrowserDriver,
    ExtensionBrowser,
    Host,
    Site,
)

pytestmark = pytest.mark.browsers("chromium", "firefox")

TRIGGER = "{action: 'authentication'}"
OWN_ID = {"chromium": EXTENSION_ID, "firefox": GECKO_ID}


def test_installed_then_removed(browser: BrowserDriver, host: Host, site: Site) -> None:
    page = browser.open("https://flattr.com/")
    page.wait_event("flattr-installed")
    assert page.events("flattr-installed") == [{"type": "flattr-installed", "detail": None}]
    assert page.session_extension() == MANIFEST_VERSION
    # The site's own script saw it too.
    page.wait_for_selector("body[data-extension='installed']")

    # Chromium: the switch on chrome://extensions; Firefox: removing the add-on. In
    # Firefox only content/watchdog.js (page world) can notice (docs/firefox.md).
    browser.remove_extension()
    page.wait_event("flattr-uninstalled")
    assert page.session_extension() is None
    page.wait_for_selector("body[data-extension='absent']")

    browser.restore_extension()
    fresh = browser.open("https://flattr.com/")
    fresh.wait_event("flattr-installed")
    fresh.dispatch("flattr-trigger", TRIGGER)
    assert fresh.wait_event("flattr-authenticate")["detail"]["id"] == OWN_ID[browser.name]
    if browser.name == "chromium":
        # The old page's listeners are gone: re-enabling does not bring its script
        # back, and a trigger there is not answered.
        page.dispatch("flattr-trigger", TRIGGER)
        fresh.dispatch("flattr-trigger", TRIGGER)
        fresh.wait_event("flattr-authenticate", count=2)
        assert page.events("flattr-authenticate") == []
    else:
        # Firefox injects the content scripts of a newly installed add-on into open
        # pages: the old page is identified again and answered by the new script.
        page.wait_event("flattr-installed", count=2)
        assert page.session_extension() == MANIFEST_VERSION
        page.dispatch("flattr-trigger", TRIGGER)
        assert page.wait_event("flattr-authenticate")["detail"]["id"] == GECKO_ID
    assert len(page.events("flattr-uninstalled")) == 1
    assert fresh.events("flattr-uninstalled") == []

    # Host: identified by hello, nothing else asked of it; API: untouched.
    assert "hello" in host.requests()
    assert [t for t in host.requests() if t not in ("hello", "get-state")] == []
    assert host.status()["authenticated"] is False
    assert site.journal(server="api") == []
    assert [e["path"] for e in site.journal(server="site", method="GET", path="/")] == ["/", "/"]


@pytest.mark.browsers("chromium")  # Firefox: BiDi cannot reload an add-on
def test_reload_fires_uninstalled(browser: ExtensionBrowser, host: Host, site: Site) -> None:
    page = browser.open("https://flattr.com/")
    page.wait_event("flattr-installed")
    assert page.session_extension() == MANIFEST_VERSION
    hellos_before = host.requests().count("hello")

    browser.worker.evaluate("chrome.runtime.reload()")
    page.wait_event("flattr-uninstalled")
    assert page.session_extension() is None

    # Under Playwright (which adds --disable-extensions) a reloaded command-line
    # extension comes back disabled; switch it on as a user would, then the reloaded
    # extension connects to the host again and identifies new pages.
    browser.restore_extension()
    fresh = browser.open("https://flattr.com/")
    fresh.wait_event("flattr-installed")
    assert fresh.session_extension() == MANIFEST_VERSION
    popup = browser.popup_tab()
    assert popup.attribute("#host-status", "data-phase") == "ready"
    assert host.requests().count("hello") > hellos_before
    assert site.journal(server="api") == []
