"""Subscription changes initiated by the web page (document 000): from the settings
page, and pushed live by the server to an open flattr.com page."""

from __future__ import annotations

import json

import pytest

from tests.support.e2e import (
    BrowserDriver,
    Host,
    Site,
    page_handshake,
    wait_popup,
)

pytestmark = pytest.mark.browsers("chromium", "firefox")


def test_settings_page_and_live_push(browser: BrowserDriver, host: Host, site: Site) -> None:
    site.create_user("grace", active=False)
    page_handshake(browser, "grace")
    assert host.status()["subscription"] == {"active": False}
    popup = browser.popup_tab()
    wait_popup(popup, "$('subscription').dataset.active === 'false'")

    # From the settings page: the server changes it, the page tells the extension.
    settings = browser.open("https://flattr.com/settings")
    settings.wait_for_selector("body[data-push='open']")
    settings.click("#subscribe")
    event = settings.wait_event("flattr-subscription")
    assert event["detail"] == {"subscription": {"active": True}}
    wait_popup(popup, "$('subscription').dataset.active === 'true'")
    assert host.status()["subscription"] == {"active": True}
    (change,) = site.journal(server="site", method="POST", path="/settings/subscription")
    assert json.loads(change["body"]) == {"active": True}

    # Pushed live: the subscription ends server-side; the open page hears it at once.
    pushed = site.set_subscription("grace", active=False)
    assert pushed["pushed_to"] >= 1
    event = settings.wait_event("flattr-subscription", count=2)
    assert event["detail"] == {"subscription": {"active": False}}
    wait_popup(popup, "$('subscription').dataset.active === 'false'")
    state = host.status()
    assert state["subscription"] == {"active": False}
    # Each page detail reached the host as the page sent it (docs/protocol.md).
    relayed = [{k: v for k, v in line["message"].items() if k != "id"}
               for line in host.log_lines()
               if line.get("msg") == "frame in"
               and line["message"].get("type") == "set-subscription"]
    assert relayed and all(set(r) == {"type", "detail"} for r in relayed), relayed
    details = [r["detail"] for r in relayed]
    assert {"subscription": {"active": True}} in details
    assert details[-1] == {"subscription": {"active": False}}
    assert state["authenticated"] is True
    assert host.requests().count("set-subscription") >= 2
    # Nothing was flattred along the way.
    assert site.bulk_posts() == []
