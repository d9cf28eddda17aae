"""Identification (document 000): sessionStorage.extension and flattr-installed on
https://flattr.com; flattr-uninstalled, the key removed and the listeners gone when
the extension is disabled or reloaded."""

from __future__ import annotations

from conftest import (
    EXTENSION_ID,
    MANIFEST_VERSION,
    ExtensionBrowser,
    Host,
    Site,
)

TRIGGER = "{action: 'authentication'}"


def disable_extension(browser: ExtensionBrowser, enabled: bool) -> None:
    """What the switch on chrome://extensions does (chrome.management in that page)."""
    admin = browser.context.new_page()
    try:
        admin.goto("chrome://extensions")
        admin.evaluate(f"chrome.management.setEnabled('{EXTENSION_ID}', {str(enabled).lower()})")
    finally:
        admin.close()


def test_installed_then_disabled(browser: ExtensionBrowser, host: Host, site: Site) -> None:
    page = browser.open("https://flattr.com/")
    page.wait_event("flattr-installed")
    assert page.events("flattr-installed") == [{"type": "flattr-installed", "detail": None}]
    assert page.session_extension() == MANIFEST_VERSION
    # The site's own script saw it too.
    page.page.wait_for_selector("body[data-extension='installed']")

    disable_extension(browser, enabled=False)
    page.wait_event("flattr-uninstalled")
    assert page.session_extension() is None
    page.page.wait_for_selector("body[data-extension='absent']")

    # Listeners are gone: re-enabling does not bring this old page's script back, and a
    # trigger here is not answered. A fresh load of the page is identified again.
    disable_extension(browser, enabled=True)
    page.dispatch("flattr-trigger", TRIGGER)
    fresh = browser.open("https://flattr.com/")
    fresh.wait_event("flattr-installed")
    fresh.dispatch("flattr-trigger", TRIGGER)
    assert fresh.wait_event("flattr-authenticate")["detail"]["id"] == EXTENSION_ID
    assert page.events("flattr-authenticate") == []
    assert len(page.events("flattr-uninstalled")) == 1

    # Host: identified by hello, nothing else asked of it; API: untouched.
    assert "hello" in host.requests()
    assert [t for t in host.requests() if t not in ("hello", "get-state")] == []
    assert host.status()["authenticated"] is False
    assert site.journal(server="api") == []
    assert [e["path"] for e in site.journal(server="site", method="GET", path="/")] == ["/", "/"]


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
    disable_extension(browser, enabled=True)
    fresh = browser.open("https://flattr.com/")
    fresh.wait_event("flattr-installed")
    assert fresh.session_extension() == MANIFEST_VERSION
    popup = browser.popup_tab()
    assert popup.page.get_attribute("#host-status", "data-phase") == "ready"
    assert host.requests().count("hello") > hellos_before
    assert site.journal(server="api") == []
