"""Flattr this page: the popup queues the active tab's URL through the host, and the
host delivers it to the fake API's bulk endpoint with the right Bearer token; through
scripted 503s it arrives once; across a browser restart it still arrives.

"Flattr this page" is ``browser.flattr_this_page``: in Chromium the real toolbar
click and popup button; in Firefox the popup page's own runtime message (BiDi cannot
click the toolbar; see FirefoxBrowser.flattr_this_page and docs/firefox.md)."""

from __future__ import annotations

import pytest

from tests.support.e2e import (
    BULK_PATH,
    BrowserDriver,
    ExtensionBrowser,
    Host,
    LaunchFn,
    Site,
    bulk_urls,
    page_handshake,
    wait_popup,
)

pytestmark = pytest.mark.browsers("chromium", "firefox")


def test_flattr_this_page_reaches_the_api(
    browser: BrowserDriver, host: Host, site: Site
) -> None:
    site.create_user("heidi", active=True)
    _page, token = page_handshake(browser, "heidi")
    url = "https://blog.example/2024/a-post?id=7"

    browser.flattr_this_page(url)
    (post,) = site.wait_for(1, server="api", method="POST", path=BULK_PATH)
    headers = {k.lower(): v for k, v in post["headers"].items()}
    assert headers["authorization"] == f"Bearer {token}"
    assert headers["content-type"].startswith("application/json")
    assert bulk_urls(site, token) == [url]

    watcher = browser.popup_tab()
    wait_popup(
        watcher, "$('queue-pending').textContent === '0' && $('queue-inflight').textContent === '0'"
    )
    state = host.status()
    assert state["queue"]["pending"] == 0 and state["queue"]["failed"] == 0
    assert host.requests().count("flattr") == 1
    assert url in site.user_flattr_urls(token)
    wait_popup(watcher, "$('queue-done').textContent === '1'")
    # Flattred again: the API says so per URL, and the popup shows it.
    browser.flattr_this_page(url)
    site.wait_for(2, server="api", method="POST", path=BULK_PATH)
    wait_popup(watcher, "$('queue-done').textContent === '2 (1 already flattred)'")


@pytest.mark.browsers("chromium")  # needs the toolbar click's activeTab rules
def test_not_http_pages_are_refused(browser: ExtensionBrowser, host: Host, site: Site) -> None:
    site.create_user("ivan", active=True)
    page_handshake(browser, "ivan")
    # A tab the extension may not read (about:blank): no URL is available.
    popup = browser.action_popup(browser.open("about:blank"))
    popup.wait_for("!document.getElementById('flattr-page').disabled")
    popup.click("flattr-page")
    popup.wait_for("document.getElementById('error').textContent !== ''")
    # Without the tabs permission the URL is hidden; with it (attention's optional
    # permission) about:blank is readable and refused as not http(s). Refused either
    # way, as an error (role="alert"), with nothing in the polite region.
    message = popup.text("error")
    assert popup.text("message") == ""
    assert "address is not available" in message or "Only http and https" in message, message
    # A tab it may read but that is not http(s): the popup page itself, in a tab.
    own = browser.popup_tab()
    wait_popup(own, "!$('flattr-page').disabled")
    own.click("#flattr-page")
    wait_popup(own, "$('error').textContent !== ''")
    assert "Only http and https pages" in own.text("#error")
    assert "flattr" not in host.requests()
    assert site.bulk_posts() == []


def test_503s_then_success_arrives_once(browser: BrowserDriver, host: Host, site: Site) -> None:
    site.create_user("judy", active=True)
    _page, token = page_handshake(browser, "judy")
    site.script(
        "POST", BULK_PATH, [{"status": 503}, {"status": 503, "headers": {"Retry-After": "0"}}]
    )
    url = "https://news.example/story"

    browser.flattr_this_page(url)
    posts = site.wait_for(3, server="api", method="POST", path=BULK_PATH)
    watcher = browser.popup_tab()
    wait_popup(
        watcher, "$('queue-pending').textContent === '0' && $('queue-inflight').textContent === '0'"
    )

    # Two refused attempts and one delivery, all with the same URL and token; the
    # queue is empty afterwards, so no further attempt will come.
    assert len(site.bulk_posts()) == 3
    assert bulk_urls(site, token) == [url, url, url]
    assert [p["seq"] for p in posts] == sorted(p["seq"] for p in posts)
    assert site.user_flattr_urls(token).count(url) == 1
    state = host.status()
    assert state["queue"]["pending"] == 0 and state["queue"]["failed"] == 0


@pytest.mark.browsers("chromium")  # restarts the browser on the same profile
def test_browser_restart_keeps_the_queue(launch: LaunchFn, host: Host, site: Site) -> None:
    site.create_user("kim", active=True)
    browser = launch()
    _page, token = page_handshake(browser, "kim")
    # The API fails until the browser has been closed and opened again.
    site.script("POST", BULK_PATH, [{"status": 503}] * 50)
    url = "https://podcast.example/episode/12"
    browser.flattr_this_page(url)
    site.wait_for(1, server="api", method="POST", path=BULK_PATH)
    browser.close()

    # The host exited with the browser; the item is still queued on disk.
    state = host.status()
    assert state["queue"]["pending"] + state["queue"]["inFlight"] == 1
    assert url not in site.user_flattr_urls(token)
    site.script("POST", BULK_PATH, [])
    before = len(site.bulk_posts())

    again = launch(profile=browser.profile)
    site.wait_for(before + 1, server="api", method="POST", path=BULK_PATH, timeout=30)
    watcher = again.popup_tab()
    wait_popup(
        watcher, "$('queue-pending').textContent === '0' && $('queue-inflight').textContent === '0'"
    )
    assert site.user_flattr_urls(token).count(url) == 1
    assert set(bulk_urls(site, token)) == {url}
    assert host.status()["queue"]["pending"] == 0
