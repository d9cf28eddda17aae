"""The API's 401 and 402 (document 000, "Initiated by extension"):

- 401: the token is erased, the popup shows signed out, queued items are kept;
  signing in again on flattr.com resumes the queue and they arrive;
- 402: the subscription is shown inactive and the queue paused; re-activating it on
  the settings page resumes the queue.
"""

from __future__ import annotations

import pytest

from tests.support.e2e import (
    BULK_PATH,
    BrowserDriver,
    Host,
    Site,
    bulk_urls,
    page_handshake,
    wait_popup,
)

pytestmark = pytest.mark.browsers("chromium", "firefox")


def test_401_signs_out_keeps_the_queue_and_resumes(
    browser: BrowserDriver, host: Host, site: Site
) -> None:
    site.create_user("leo", active=True)
    first_page, old_token = page_handshake(browser, "leo")
    first_page.close()
    assert site.revoke(username="leo") >= 1
    url = "https://blog.example/revoked"

    browser.flattr_this_page(url)
    (refused,) = site.wait_for(1, server="api", method="POST", path=BULK_PATH)
    assert {k.lower(): v for k, v in refused["headers"].items()}["authorization"] == (
        f"Bearer {old_token}"
    )

    watcher = browser.popup_tab()
    wait_popup(watcher, "$('auth').dataset.authenticated === 'false' && !$('sign-in').hidden")
    assert watcher.attribute("#queue-paused", "data-paused") == "signed_out"
    assert watcher.text("#queue-pending") == "1"
    watcher.screenshot("popup-signed-out-after-401.png", selector="body")
    state = host.status()
    assert state["authenticated"] is False
    assert state["queue"]["pending"] == 1
    assert state["queue"]["paused"] == "signed_out"
    assert old_token.encode() not in host.files_bytes()

    # Signing in again on flattr.com (still logged in there) resumes the queue.
    again = browser.open("https://flattr.com/oauth/ext")
    again.wait_event("flattr-authenticated")
    new_token = again.events("flattr-token")[-1]["detail"]["accessToken"]
    assert new_token != old_token
    site.wait_for(2, server="api", method="POST", path=BULK_PATH)
    wait_popup(
        watcher,
        "$('auth').dataset.authenticated === 'true' && $('queue-pending').textContent === '0'"
        " && $('queue-inflight').textContent === '0'",
    )
    assert bulk_urls(site, old_token) == [url]
    assert bulk_urls(site, new_token) == [url]
    assert site.user_flattr_urls(new_token).count(url) == 1
    state = host.status()
    assert state["authenticated"] is True and state["queue"]["pending"] == 0


def test_402_pauses_until_the_subscription_is_active_again(
    browser: BrowserDriver, host: Host, site: Site
) -> None:
    site.create_user("mia", active=True)
    # Pages get no live push in this test, so the server-side change below reaches
    # the extension only through the API's 402.
    browser.block_live_push()
    _page, token = page_handshake(browser, "mia")
    assert site.set_subscription("mia", active=False)["pushed_to"] == 0
    assert host.status()["subscription"] == {"active": True}
    url = "https://music.example/track/3"

    browser.flattr_this_page(url)
    site.wait_for(1, server="api", method="POST", path=BULK_PATH)
    watcher = browser.popup_tab()
    wait_popup(
        watcher,
        "$('subscription').dataset.active === 'false'"
        " && $('queue-paused').dataset.paused === 'subscription_inactive'",
    )
    assert watcher.text("#queue-pending") == "1"
    watcher.screenshot("popup-subscription-inactive.png", selector="body")
    state = host.status()
    assert state["authenticated"] is True
    assert state["subscription"] == {"active": False}
    assert state["queue"]["paused"] == "subscription_inactive"
    assert state["queue"]["pending"] == 1
    assert url not in site.user_flattr_urls(token)

    # Re-activation on the settings page: the page tells the extension, the host resumes.
    settings = browser.open("https://flattr.com/settings")
    settings.click("#subscribe")
    assert settings.wait_event("flattr-subscription")["detail"] == {
        "subscription": {"active": True}
    }
    site.wait_for(2, server="api", method="POST", path=BULK_PATH)
    wait_popup(
        watcher,
        "$('subscription').dataset.active === 'true' && $('queue-pending').textContent === '0'"
        " && $('queue-inflight').textContent === '0'",
    )
    assert bulk_urls(site, token) == [url, url]
    assert site.user_flattr_urls(token).count(url) == 1
    state = host.status()
    assert state["queue"]["paused"] is None and state["queue"]["pending"] == 0
