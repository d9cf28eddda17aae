"""The popup in each state a user meets, in Chromium and Firefox: signed out, signed
in with a queue (and the next attempt time), failed (and "Retry failed" through the
host), paused, host missing. In each state the text contrast of the rendered popup is
measured (WCAG AA) and a screenshot saved to test-artifacts/ (``popup-state-*.png``;
Firefox's prefixed ``firefox-``). The popup runs in a tab here: the same page and
code as the toolbar popup (Firefox's BiDi cannot open the toolbar panel).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from flattr_host import __version__ as HOST_VERSION
from tests.support.a11y import CONTRAST_JS
from tests.support.e2e import (
    BULK_PATH,
    MANIFEST_VERSION,
    BrowserDriver,
    ExtensionBrowser,
    FirefoxBrowser,
    FirefoxPage,
    FlattrPage,
    Host,
    Site,
    bulk_urls,
    page_handshake,
    wait_popup,
)
from tests.support.firefox import native_messaging_dir

pytestmark = pytest.mark.browsers("chromium", "firefox")

FAILING = {"status": 400, "body": {"error": "invalid_parameters",
                                   "error_description": "scripted failure"}}
LATER = {"status": 503, "headers": {"Retry-After": "600"}, "body": "scripted: come back later"}


def check_contrast(popup: FlattrPage, state: str) -> None:
    found: dict[str, Any] = popup.evaluate(CONTRAST_JS)
    assert found["checked"] >= 5, found
    assert found["failures"] == [], f"{state}: {json.dumps(found['failures'], indent=1)}"


def snapshot(popup: FlattrPage, state: str) -> None:
    """Contrast check and screenshot of the popup in ``state``."""
    check_contrast(popup, state)
    popup.screenshot(f"popup-state-{state}.png", selector="body")


def live_regions(popup: FlattrPage) -> dict[str, Any]:
    value: dict[str, Any] = popup.evaluate(
        "({message: document.getElementById('message').textContent,"
        " messageRole: document.getElementById('message').getAttribute('role'),"
        " error: document.getElementById('error').textContent,"
        " errorRole: document.getElementById('error').getAttribute('role')})"
    )
    return value


def test_popup_states_retry_failed_and_versions(
    browser: BrowserDriver, host: Host, site: Site
) -> None:
    popup = browser.popup_tab()
    wait_popup(popup, "$('host-status').dataset.phase === 'ready' && !$('sign-in').hidden")
    footer = popup.evaluate("({...document.getElementById('versions').dataset,"
                            " text: document.getElementById('versions').textContent})")
    assert footer["extension"] == MANIFEST_VERSION and footer["host"] == HOST_VERSION
    assert f"Extension {MANIFEST_VERSION}" in footer["text"]
    assert f"host {HOST_VERSION}" in footer["text"]
    snapshot(popup, "signed-out")

    # Failed: the API refuses the flattr for good (400).
    site.create_user("pia", active=True)
    page, token = page_handshake(browser, "pia")
    site.script("POST", BULK_PATH, [FAILING])
    url = "https://blog.example/retry-me"
    browser.flattr_this_page(url)
    site.wait_for(1, server="api", method="POST", path=BULK_PATH)
    wait_popup(popup, "$('queue-failed').textContent === '1' && !$('retry-failed').hidden")
    snapshot(popup, "failed")

    # "Retry failed": the host sends it again; this time the API says "later".
    site.script("POST", BULK_PATH, [LATER])
    before_ms = time.time() * 1000
    popup.click("#retry-failed")
    wait_popup(popup, "$('retry-failed').dataset.done === '1'")
    regions = live_regions(popup)
    assert regions == {"message": "Failed flattrs queued again: 1.", "messageRole": "status",
                       "error": "", "errorRole": "alert"}
    site.wait_for(2, server="api", method="POST", path=BULK_PATH)
    assert bulk_urls(site, token) == [url, url]
    assert "retry-failed" in host.requests()

    # Signed in with a queue: one pending, the next attempt when the API asked.
    wait_popup(popup, "$('queue-pending').textContent === '1' && $('queue-next').dataset.at")
    next_at = int(popup.attribute("#queue-next", "data-at") or 0)
    assert before_ms + 500_000 < next_at < before_ms + 700_000
    assert ":" in popup.text("#queue-next")  # a clock time, in the user's format
    assert popup.evaluate("document.getElementById('retry-failed').hidden") is True
    snapshot(popup, "queue")

    # Paused: the subscription stops on flattr.com (the open page gets the push).
    site.set_subscription("pia", False)
    wait_popup(popup, "$('queue-paused').dataset.paused === 'subscription_inactive'")
    assert popup.text("#queue-paused") == "yes: subscription inactive"
    snapshot(popup, "paused")
    page.close()


def test_popup_host_missing(browser: BrowserDriver, host: Host, site: Site) -> None:
    """The host's manifest removed, the extension restarted: the popup names the
    problem, the fix for this browser and how to get flattr-host."""
    if isinstance(browser, ExtensionBrowser):
        manifest = browser.profile / "NativeMessagingHosts"
        expected = "all"  # headless Chromium's brands are plain "Chromium"
    else:
        assert isinstance(browser, FirefoxBrowser)
        manifest = native_messaging_dir(browser.firefox.home)
        expected = "firefox"
    browser.remove_extension()
    (manifest / "com.flattr.companion.json").unlink()
    browser.restore_extension()
    popup = browser.popup_tab()
    wait_popup(popup, f"$('host-status').dataset.phase === 'missing'"
                      f" && $('host-fix').dataset.browser === {expected!r}")
    # Each retry keeps the problem and its fix on screen: every phase the popup
    # shows while a refresh makes the worker try the host again is recorded.
    popup.evaluate("window.seenPhases = []; new MutationObserver(() => window.seenPhases.push("
                   "[$('host-status').dataset.phase, $('host-fix').textContent]))"
                   ".observe(document.body, {attributes: true, childList: true, subtree: true})"
                   .replace("$(", "document.getElementById("))
    refresh = ("chrome.runtime.sendMessage({type: 'popup-refresh'})"
               ".then((r) => r.ok || r.error.code)")
    assert popup.evaluate(refresh) == "host_unavailable"
    seen = popup.evaluate("window.seenPhases")
    assert all(phase == "missing" and fix for phase, fix in seen), seen
    assert popup.text("#host-fix").splitlines() == [
        f"flattr-host install --browser {expected}", f"flattr-host doctor --browser {expected}"]
    assert popup.text("#host-get-command") == "pipx install flattr-companion"
    assert popup.evaluate("document.getElementById('host-get').hidden") is False
    assert popup.evaluate("document.getElementById('versions').dataset.host") == ""
    snapshot(popup, "host-missing")


@pytest.mark.browsers("firefox")
def test_firefox_grants_the_optional_attention_permissions(
    browser: BrowserDriver, host: Host, site: Site
) -> None:
    """Firefox accepts tabs, idle and scripting as optional permissions and grants
    them to the popup's request in a click (the doorhanger is switched off by its
    own pref, see conftest). Attention itself runs in Chromium only: a popup in a
    Firefox tab is its own active tab, so it shows no attention section."""
    popup = browser.popup_tab()
    wait_popup(popup, "$('host-status').dataset.phase === 'ready'")
    query = "browser.permissions.contains({permissions: ['tabs', 'idle', 'scripting']})"
    assert popup.evaluate(query) is False
    held = set(popup.evaluate("browser.permissions.getAll()")["permissions"])
    assert held == {"nativeMessaging", "activeTab"}
    # Firefox grants only inside a trusted input event (a scripted click, even with
    # BiDi's userActivation, is refused "only from a user input handler"). So the
    # "Allow" button the popup shows when counting lacks its permissions is made
    # visible here and clicked with BiDi's real pointer input.
    popup.evaluate("for (const id of ['attention', 'attention-permission-missing'])"
                   " document.getElementById(id).hidden = false")
    assert isinstance(popup, FirefoxPage)
    bidi, context = popup.browser.bidi, popup.context
    button = bidi.evaluate("document.getElementById('attention-permission-button')", context)
    bidi.send("input.performActions", {"context": context, "actions": [{
        "type": "pointer", "id": "mouse", "actions": [
            {"type": "pointerMove", "x": 0, "y": 0,
             "origin": {"type": "element", "element": {"sharedId": button.shared_id}}},
            {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})
    wait_popup(popup, "$('attention-permission').dataset.granted === 'true'")
    assert popup.evaluate(query) is True
