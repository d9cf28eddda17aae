"""Attention through the real host process (issue 9): signals in, flattrs out.

Each test spawns ``flattr-host`` as Chrome does, speaks frames to it, and checks
the real store, the real CLI and the fake API's journal. Thresholds are scaled
with ``FLATTR_ATTENTION_SCALE=0.01`` (first normal threshold after 0.5 s of
attention, activity window 0.15 s, heartbeat 0.1 s); the clock is the host's own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from typing import Any

from flattr_testing.host import HostProcess
from tests.integration.conftest import Delivery, drained

SCALE = "0.01"
PAGE = "https://blog.example/post?utm_source=x#comments"
KEY = "https://blog.example/post"
OTHER = "https://elsewhere.example/"


def tab(kind: str, url: str | None, tab_id: int = 1, window: int = 1,
        incognito: bool = False) -> dict[str, Any]:
    return {"signal": kind, "tabId": tab_id, "windowId": window, "url": url,
            "incognito": incognito}


def signals(host: HostProcess, *items: dict[str, Any]) -> None:
    reply = host.request("attention-signals", signals=list(items))
    assert reply == {"id": reply["id"], "ok": True, "result": {}}, reply


def front(host: HostProcess, url: str, tab_id: int = 1) -> None:
    signals(host, {"signal": "reset"}, {"signal": "window-focus", "windowId": 1},
            tab("tab-activated", url, tab_id), {"signal": "idle", "state": "active"})


def heartbeat(host: HostProcess, seconds: float, every: float = 0.1) -> None:
    """Relay `activity` like the extension's heartbeat, for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        signals(host, {"signal": "activity"})
        time.sleep(every)


def page(host: HostProcess, url: str) -> dict[str, Any]:
    reply = host.request("attention-page", url=url)
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def cli(delivery: Delivery, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flattr_host", *args], capture_output=True,
                          text=True, timeout=30, check=False,
                          env={**os.environ, "FLATTR_HOST_HOME": str(delivery.home)})


def counters(delivery: Delivery) -> dict[str, tuple[float, int]]:
    conn = sqlite3.connect(delivery.home / "host.db")
    try:
        rows = conn.execute("SELECT url, attention_s, next_index FROM attention_page").fetchall()
    finally:
        conn.close()
    return {url: (att, index) for url, att, index in rows}


def test_hello_says_attention_is_off_until_a_site_is_opted_in(delivery: Delivery) -> None:
    host = HostProcess(delivery.launcher, delivery.home,
                       env=delivery.env(FLATTR_ATTENTION_SCALE=SCALE))
    delivery.hosts.append(host)
    hello = host.request("hello", extension={"id": "x", "version": "1", "build": "t"})
    assert hello["result"]["attention"] == {"active": False, "heartbeatMs": 100}
    settings = host.request("attention-site", site="blog.example", enabled=True)["result"]
    assert settings == {"countAll": False, "sites": ["blog.example"], "active": True,
                        "heartbeatMs": 100}
    assert host.request("attention-site", site="www.blog.example", enabled=True)["error"][
        "code"] == "invalid_request"
    again = delivery.start(sign_in=False, FLATTR_ATTENTION_SCALE=SCALE)
    assert again.request("attention-settings")["result"]["sites"] == ["blog.example"]


def test_page_in_front_is_flattred_and_reaches_the_api(delivery: Delivery) -> None:
    host = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    host.request("attention-site", site="blog.example", enabled=True)
    front(host, PAGE)
    mark = len(host.events)
    heartbeat(host, 0.8)  # 0.5 s reach the first threshold (50 nominal s)
    host.wait_event(drained(1), timeout=20, since=mark)
    assert delivery.sent_urls() == [KEY]
    status = page(host, PAGE)
    assert status["flattrs"] == 1 and status["nextThreshold"] == 96
    assert status["attention"] >= 50


def test_audio_in_the_background_is_flattred_by_the_timer_alone(delivery: Delivery) -> None:
    host = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    host.request("attention-count-all", enabled=True)
    signals(host, {"signal": "window-focus", "windowId": None},
            {**tab("audible-changed", "https://radio.example/live", tab_id=5),
             "audible": True, "muted": False})
    # No signal after this one: only the host's timer advances the engine (140 s audio).
    host.wait_event(drained(1), timeout=20)
    assert delivery.sent_urls() == ["https://radio.example/live"]
    assert page(host, "https://radio.example/live")["audioPage"] is True


def test_background_tab_idle_user_and_opted_out_site_are_not_flattred(
        delivery: Delivery) -> None:
    host = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    host.request("attention-site", site="blog.example", enabled=True)
    # The opted-in page loads in tab 1, then the user switches to tab 2 (not opted in).
    front(host, PAGE, tab_id=1)
    signals(host, tab("tab-activated", OTHER, tab_id=2))
    heartbeat(host, 0.8)
    # Back on the page, but the user is idle: heartbeats do not count while idle.
    signals(host, tab("tab-activated", PAGE, tab_id=1), {"signal": "idle", "state": "idle"})
    heartbeat(host, 0.8)
    status = page(host, PAGE)
    assert status["flattrs"] == 0 and status["attention"] < 50
    assert page(host, OTHER)["attention"] == 0 and page(host, OTHER)["counted"] is False
    assert OTHER not in counters(delivery)
    host.request("flush")
    assert delivery.sent_urls() == []
    # Positive control: the same page, user active again, is flattred.
    mark = len(host.events)
    signals(host, {"signal": "idle", "state": "active"})
    heartbeat(host, 0.8)
    host.wait_event(drained(1), timeout=20, since=mark)
    assert delivery.sent_urls() == [KEY]


def test_manual_flattr_is_queued_as_clicked_and_jumps(delivery: Delivery) -> None:
    host = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    reply = host.request("flattr", urls=[PAGE], manual=True)["result"]
    assert reply["queued"] == 1
    assert reply["page"]["flattrs"] == 1 and reply["page"]["nextThreshold"] == 96
    assert reply["page"]["counted"] is False  # a click counts without opting the site in
    host.wait_event(drained(1), timeout=20)
    assert delivery.sent_urls() == [PAGE]


def test_restart_keeps_counters_and_crossing_continues(delivery: Delivery) -> None:
    host = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    host.request("attention-site", site="blog.example", enabled=True)
    front(host, PAGE)
    heartbeat(host, 0.25)  # about 25 nominal s
    before = page(host, PAGE)["attention"]
    assert 15 <= before < 50
    host.close_stdin()  # the browser closed: the host saves and exits
    assert host.wait() == 0
    assert counters(delivery)[KEY][0] >= before - 0.001  # the page is rounded to 3 places

    again = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    assert page(again, PAGE)["attention"] >= before - 0.001
    # Killed without warning: what was committed with the last signal survives.
    front(again, PAGE)
    heartbeat(again, 0.1)
    committed = counters(delivery)[KEY][0]
    again.kill()
    third = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    assert page(third, PAGE)["attention"] >= committed - 0.001
    assert committed > before
    front(third, PAGE)
    mark = len(third.events)
    heartbeat(third, 0.6)
    third.wait_event(drained(1), timeout=20, since=mark)
    assert delivery.sent_urls() == [KEY]


def test_cli_list_and_clear_with_a_running_host(delivery: Delivery) -> None:
    host = delivery.start(sign_in=False, FLATTR_ATTENTION_SCALE=SCALE)
    host.request("attention-count-all", enabled=True)
    front(host, PAGE)
    heartbeat(host, 0.2)
    signals(host, tab("tab-activated", OTHER, tab_id=2))
    heartbeat(host, 0.2)

    listed = cli(delivery, "attention", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["count_all"] is True
    assert {p["url"] for p in data["pages"]} == {KEY, OTHER}
    assert all(p["next_threshold_s"] == 50 for p in data["pages"])
    text = cli(delivery, "attention", "list").stdout
    assert "count every site  yes" in text and KEY in text

    signals(host, {"signal": "window-focus", "windowId": None})  # nothing accrues now
    cleared = cli(delivery, "attention", "clear", "--site", "www.blog.example")
    assert cleared.stdout.strip() == "deleted 1 attention counters"
    # The running host must not write the cleared counter back from memory.
    signals(host, tab("tab-activated", PAGE, tab_id=1), {"signal": "window-focus", "windowId": 1})
    signals(host, {"signal": "window-focus", "windowId": None})
    assert KEY not in counters(delivery)
    assert page(host, PAGE)["attention"] == 0
    assert cli(delivery, "attention", "clear").stdout.strip() == "deleted 1 attention counters"
    assert cli(delivery, "attention", "list").stdout.splitlines()[-1] == "no counted pages"


def test_urls_stay_out_of_the_log_above_debug(delivery: Delivery) -> None:
    host = delivery.start(FLATTR_ATTENTION_SCALE=SCALE, FLATTR_LOG_LEVEL="info")
    host.request("attention-site", site="blog.example", enabled=True)
    front(host, PAGE)
    mark = len(host.events)
    heartbeat(host, 0.8)
    host.wait_event(drained(1), timeout=20, since=mark)
    host.request("flattr", urls=["https://manual.example/x"], manual=True)
    host.close_stdin()
    host.wait()
    text = "".join(p.read_text() for p in (delivery.home / "logs").glob("*"))
    assert "attention flattrs queued" in text
    for secret in ("blog.example", "manual.example", "elsewhere"):
        assert secret not in text
