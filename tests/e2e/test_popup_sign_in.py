"""Sign-in started from the popup (document 000, "Initiated by extension"): the
popup opens https://flattr.com/oauth/ext in a new tab, the page runs the
handshake, and the tab closes itself (after opening a new tab if it was the
window's last). Screenshots of the popup and the sign-in page are saved."""

from __future__ import annotations

import json

from tests.support.e2e import (
    EXTENSION_ID,
    ExtensionBrowser,
    Host,
    Site,
    log_in,
    wait_popup,
)


def test_sign_in_from_the_toolbar_popup(browser: ExtensionBrowser, host: Host, site: Site) -> None:
    site.create_user("erin", active=True)
    start = browser.wrap(browser.context.pages[0])
    popup = browser.action_popup(start)
    popup.wait_for("document.getElementById('host-status').dataset.phase === 'ready'")
    popup.wait_for("!document.getElementById('sign-in').hidden")
    assert popup.text("auth") == "Signed out"
    popup.screenshot("popup-signed-out.png")

    with browser.context.expect_page() as opened:
        popup.click("sign-in")
    tab = browser.wrap(opened.value)
    tab.page.wait_for_url(lambda url: url.startswith("https://flattr.com/login?"))
    tab.screenshot("sign-in-page.png")
    log_in(tab, "erin")
    tab.page.wait_for_event("close")  # closed by the extension after the handshake

    # Page side: the closed tab saw the handshake but was not answered with
    # flattr-authenticated (it was closed instead).
    signin = "https://flattr.com/oauth/ext"
    assert browser.seen_events("flattr-authenticate", signin)[0]["detail"]["id"] == EXTENSION_ID
    assert len(browser.seen_events("flattr-token", signin)) == 1
    assert browser.seen_events("flattr-authenticated", signin) == []
    # The starting tab is still there; no extra tab was needed.
    assert [p.url for p in browser.context.pages] == [start.url]

    # Host and fake site.
    state = host.status()
    assert state["authenticated"] is True and state["subscription"] == {"active": True}
    (minted,) = site.journal(server="site", method="POST", path="/oauth/ext/token")
    assert json.loads(minted["body"])["id"] == EXTENSION_ID

    after = browser.popup_tab()
    wait_popup(after, "$('auth').dataset.authenticated === 'true'")
    assert after.page.is_visible("#sign-out")
    after.screenshot("popup-signed-in.png", selector="body")


def test_last_tab_is_replaced_before_closing(
    browser: ExtensionBrowser, host: Host, site: Site
) -> None:
    site.create_user("frank", active=False)
    popup = browser.popup_tab()
    wait_popup(popup, "!$('sign-in').hidden")
    with browser.context.expect_page() as opened:
        popup.page.click("#sign-in")
    tab = browser.wrap(opened.value)
    tab.page.wait_for_url(lambda url: url.startswith("https://flattr.com/login?"))
    for other in browser.context.pages:
        if other is not tab.page:
            other.close()
    assert browser.context.pages == [tab.page]

    with browser.context.expect_page() as replacement:
        log_in(tab, "frank")
    if not tab.page.is_closed():
        tab.page.wait_for_event("close")
    new_tab = replacement.value
    assert browser.context.pages == [new_tab]
    assert not new_tab.url.startswith("https://flattr.com")

    state = host.status()
    assert state["authenticated"] is True and state["subscription"] == {"active": False}
    assert len(site.journal(server="site", method="POST", path="/oauth/ext/token")) == 1
    assert browser.seen_events("flattr-authenticated") == []
