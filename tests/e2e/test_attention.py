"""Attention end to end: real Chromium, real extension, real host, fake API.

Thresholds are scaled with ``FLATTR_ATTENTION_SCALE=0.05``: the first flattr of a
page comes after 2.5 s of attention (50 nominal s), the activity window lasts
0.75 s, and the host asks the extension for a heartbeat every 0.5 s.

Signals come from the browser's own events (tab activation, loads, window focus),
relayed by the worker. Idle: headless Chromium has no input devices, so
``chrome.idle`` never changes state by itself, and CDP has no override for it
(``Emulation.setIdleOverride`` drives the web Idle Detection API, not
``chrome.idle``). The test therefore calls the worker's own
``chrome.idle.onStateChanged`` listener (``onIdleStateChanged``) with the state a
real idle user produces; everything from there on (relay, host, engine) is real.

Negative results ("not flattred") are made meaningful by a positive control in the
same browser afterwards, and by the host's counters.

Permissions: ``tabs``, ``idle`` and ``scripting`` are optional and requested by the
popup when the user opts in. Headless Chromium cannot show the permission dialog, so
the profile starts as Chrome leaves it after an earlier "Allow"
(``granted_before``, see conftest.grant_attention_before); the popup's own
``permissions.request``, run in a real click, then grants them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.e2e import (
    BULK_PATH,
    ActionPopup,
    ExtensionBrowser,
    FlattrPage,
    Host,
    LaunchFn,
    Site,
    bulk_urls,
    page_handshake,
    routed_page,
)

SCALE = "0.05"
THRESHOLD_REAL_S = 50 * 0.05
CREATOR = "https://creator.example/essay"
CREATOR_HTML = (
    "<!doctype html><title>An essay</title>"
    '<link rel="payment" href="https://flattr.com/@creator"><h1>An essay</h1>'
)
PLAIN_HTML = "<!doctype html><title>{0}</title><h1>{0}</h1>"


def attention_browser(launch: LaunchFn, host: Host) -> ExtensionBrowser:
    return launch(env={**host.env, "FLATTR_ATTENTION_SCALE": SCALE}, granted_before=True)


def granted(browser: ExtensionBrowser) -> bool:
    """Whether the attention permissions are active, as the worker sees them."""
    value: bool = browser.worker.evaluate(
        "chrome.permissions.contains({permissions: ['tabs', 'idle', 'scripting']})")
    return value


def counters(host: Host) -> dict[str, dict[str, Any]]:
    done = host.cli("attention", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {p["url"]: p for p in json.loads(done.stdout)["pages"]}


def settled_attention(host: Host, url: str, every: float = 0.75,
                      timeout: float = 20.0) -> float:
    """``url``'s stored attention once it stops growing: the idle signal reached the
    host and the save that followed is written. ``every`` is longer than the
    extension's heartbeat (0.5 s here), whose relays save a growing value while the
    user is active; an idle that never took effect fails here."""
    deadline = time.monotonic() + timeout
    last = counters(host)[url]["attention_s"]
    while True:
        time.sleep(every)
        now = counters(host)[url]["attention_s"]
        if now == last:
            return float(now)
        assert time.monotonic() < deadline, f"{url} kept accruing: {last} -> {now}"
        last = now


def open_page(browser: ExtensionBrowser, url: str, html: str | None = None) -> FlattrPage:
    return routed_page(browser, url, html or PLAIN_HTML.format(url))


def popup_for(browser: ExtensionBrowser, tab: FlattrPage) -> ActionPopup:
    popup = browser.action_popup(tab)
    popup.wait_for("!document.getElementById('attention').hidden")
    return popup


def popup_attention(popup: ActionPopup) -> dict[str, Any]:
    value: dict[str, Any] = popup.evaluate(
        "({...document.getElementById('attention-page').dataset, "
        "text: document.getElementById('attention-page').textContent, "
        "site: document.getElementById('attention-site').checked, "
        "countAll: document.getElementById('attention-count-all').checked, "
        "offer: !document.getElementById('attention-offer').hidden})"
    )
    return value


def wait_bulk(site: Site, count: int, timeout: float = 20) -> None:
    site.wait_for(count, server="api", method="POST", path=BULK_PATH, timeout=timeout)


def test_creator_page_opted_in_from_popup_and_kept_in_front_is_flattred(
        launch: LaunchFn, host: Host, site: Site) -> None:
    site.create_user("attn-ada", active=True)
    browser = attention_browser(launch, host)
    _page, token = page_handshake(browser, "attn-ada")
    tab = open_page(browser, CREATOR, CREATOR_HTML)

    # Before any opt-in the popup cannot read the page (no `scripting`): no offer,
    # only the explanation of what auto-flattr needs.
    popup = popup_for(browser, tab)
    popup.wait_for("document.getElementById('attention-permission').dataset.granted === 'false'")
    assert popup_attention(popup)["offer"] is False
    popup.close()
    # The user opts another site in (granting the permissions), then out again.
    other = open_page(browser, "https://first.example/")
    popup = popup_for(browser, other)
    popup.click("attention-site")
    popup.wait_for("document.getElementById('attention-page').dataset.counted === 'true'")
    assert granted(browser)
    popup.click("attention-site")
    popup.wait_for("document.getElementById('attention-page').dataset.counted === 'false'")
    popup.close()

    # Now the popup reads the page's rel="payment" link on demand and offers opt-in.
    tab.page.bring_to_front()
    popup = popup_for(browser, tab)
    popup.wait_for("!document.getElementById('attention-offer').hidden")
    shown = popup_attention(popup)
    assert shown["counted"] == "false" and shown["offer"] is True and shown["site"] is False
    assert "next flattr at 50 s" in shown["text"]
    popup.screenshot("popup-attention-offer.png")
    popup.click("attention-offer-button")
    popup.wait_for("document.getElementById('attention-page').dataset.counted === 'true'")
    assert popup_attention(popup)["site"] is True
    popup.close()

    tab.page.bring_to_front()
    wait_bulk(site, 1)
    assert bulk_urls(site, token) == [CREATOR]
    assert CREATOR in site.user_flattr_urls(token)

    # The popup shows the attention so far and the next threshold.
    popup = popup_for(browser, tab)
    popup.wait_for("document.getElementById('attention-page').dataset.flattrs === '1'")
    shown = popup_attention(popup)
    assert float(shown["attention"]) >= 50
    assert shown["next"] == "96"
    assert "next flattr at 96 s" in shown["text"]
    popup.screenshot("popup-attention-counted.png")
    assert counters(host)[CREATOR]["next_index"] >= 1


def test_background_tab_and_idle_user_are_not_flattred(
        launch: LaunchFn, host: Host, site: Site) -> None:
    site.create_user("attn-bob", active=True)
    browser = attention_browser(launch, host)
    _page, token = page_handshake(browser, "attn-bob")
    back = open_page(browser, "https://back.example/")
    popup = popup_for(browser, back)
    assert not granted(browser)
    popup.click("attention-count-all")  # every site counts: the tab is what matters
    popup.wait_for("document.getElementById('attention-count-all').checked === true")
    popup.wait_for("document.getElementById('attention-page').dataset.counted === 'true'")
    popup.close()

    front = open_page(browser, "https://front.example/")  # a new tab in front
    front.page.bring_to_front()
    wait_bulk(site, 1)
    assert bulk_urls(site, token) == ["https://front.example/"]
    seen = counters(host)
    assert seen.get("https://back.example/", {"next_index": 0})["next_index"] == 0
    assert seen.get("https://back.example/", {"attention_s": 0})["attention_s"] < 50

    # The user goes idle (chrome.idle's listener, see the module docstring).
    browser.worker.evaluate("onIdleStateChanged('idle')")
    idle_from = settled_attention(host, "https://front.example/")
    time.sleep(THRESHOLD_REAL_S * 1.5)  # longer than the next threshold would take
    assert counters(host)["https://front.example/"]["attention_s"] <= idle_from + 1
    assert len(site.bulk_posts()) == 1

    # Positive control: active again, the front page reaches its next threshold.
    browser.worker.evaluate("onIdleStateChanged('active')")
    wait_bulk(site, 2)
    assert bulk_urls(site, token) == ["https://front.example/"] * 2
    assert "https://back.example/" not in bulk_urls(site)


def test_site_not_opted_in_is_never_flattred(launch: LaunchFn, host: Host, site: Site) -> None:
    site.create_user("attn-cy", active=True)
    browser = attention_browser(launch, host)
    _page, token = page_handshake(browser, "attn-cy")
    tab = open_page(browser, "https://other.example/read")
    popup = popup_for(browser, tab)
    shown = popup_attention(popup)
    assert shown["counted"] == "false" and shown["offer"] is False  # no creator markers
    popup.close()

    tab.page.bring_to_front()
    time.sleep(THRESHOLD_REAL_S * 1.5)
    assert site.bulk_posts() == []
    assert counters(host) == {}  # not even stored: it is browsing history

    # Positive control: the same tab, once the user ticks "Auto-flattr this site".
    popup = popup_for(browser, tab)
    popup.click("attention-site")
    popup.wait_for("document.getElementById('attention-page').dataset.counted === 'true'")
    popup.close()
    tab.page.bring_to_front()
    wait_bulk(site, 1)
    assert bulk_urls(site, token) == ["https://other.example/read"]

    # And ticking it off again stops counting.
    popup = popup_for(browser, tab)
    popup.click("attention-site")
    popup.wait_for("document.getElementById('attention-page').dataset.counted === 'false'")
    popup.close()
    before = counters(host)["https://other.example/read"]["attention_s"]
    time.sleep(THRESHOLD_REAL_S)
    assert counters(host)["https://other.example/read"]["attention_s"] <= before + 1
    assert len(site.bulk_posts()) == 1


def test_opted_in_without_permissions_counts_nothing_until_allowed(
        launch: LaunchFn, host: Host, site: Site) -> None:
    """Counting is on in the host (set elsewhere: another profile, an older version)
    but the browser has not granted the permissions: nothing accrues, the popup says
    why and offers "Allow"; once allowed, attention works as before."""
    site.create_user("attn-dee", active=True)
    browser = attention_browser(launch, host)
    _page, token = page_handshake(browser, "attn-dee")
    front = open_page(browser, "https://front.example/")
    front.page.bring_to_front()
    browser.worker.evaluate(
        "request('attention-count-all', {enabled: true}).then((r) => setAttention(r, false))")
    assert not granted(browser)
    assert browser.worker.evaluate("typeof chrome.idle") == "undefined"
    time.sleep(THRESHOLD_REAL_S * 1.5)
    assert site.bulk_posts() == []

    popup = popup_for(browser, front)
    popup.wait_for("!document.getElementById('attention-permission-missing').hidden")
    popup.screenshot("popup-attention-permission-missing.png")
    popup.click("attention-permission-button")
    popup.wait_for("document.getElementById('attention-permission-missing').hidden")
    assert granted(browser)
    assert browser.worker.evaluate("typeof chrome.idle") == "object"
    popup.close()

    front.page.bring_to_front()
    wait_bulk(site, 1)
    assert bulk_urls(site, token) == ["https://front.example/"]


def test_refused_permissions_change_nothing(launch: LaunchFn, host: Host, site: Site) -> None:
    """The browser refuses the request (here: Chrome's own refusal of a
    permissions.request without a user action, the one refusal headless Chromium can
    produce): the box is unticked again, the popup says why in its alert region, and
    the host is not told."""
    site.create_user("attn-eve", active=True)
    browser = attention_browser(launch, host)
    page_handshake(browser, "attn-eve")
    tab = open_page(browser, "https://refused.example/")
    popup = popup_for(browser, tab)
    popup.evaluate("document.getElementById('attention-site').click()")  # no user gesture
    popup.wait_for("document.getElementById('error').textContent !== ''")
    assert "nothing was changed" in popup.text("error")
    assert popup_attention(popup)["site"] is False
    assert not granted(browser)
    assert "attention-site" not in host.requests()
    popup.close()
