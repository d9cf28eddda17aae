"""Attention through the real host process: signals in, flattrs out.

Each test spawns ``flattr-host`` as Chrome does, speaks frames to it, and checks
the real store, the real CLI and the fake API's journal. Thresholds are scaled
with ``FLATTR_ATTENTION_SCALE=0.01`` (first normal threshold after 0.5 s of
attention, activity window 0.15 s, heartbeat 0.1 s); the clock is the host's own.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flattr_host.attention.engine import ACTIVITY_WINDOW_S
from flattr_testing.host import HostProcess
from tests.integration.conftest import Delivery, drained

SCALE = "0.01"
PAGE = "https://blog.example/post?utm_source=x#comments"
KEY = "https://blog.example/post"
OTHER = "https://elsewhere.example/"
#: Real seconds page Y accrues in memory, not written, around a deletion of page X.
UNWRITTEN_S = 0.5


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


def stored_past(delivery: Delivery, url: str, value: float, timeout: float = 10.0) -> float:
    """The stored attention of ``url`` once it is above ``value`` (polls the real file)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = counters(delivery).get(url, (0.0, 0))[0]
        if stored > value or time.monotonic() > deadline:
            return stored
        time.sleep(0.01)


def let_pass(since: float, seconds: float) -> None:
    """Return once at least ``seconds`` passed since ``since`` (``time.monotonic()``).

    A lower bound only, true on any machine: the host stamps signals with the same
    system-wide monotonic clock, so a page in front accrues at least this much.
    """
    time.sleep(max(0.0, since + seconds - time.monotonic()))


def switch_to_other_page(delivery: Delivery, host: HostProcess) -> None:
    """Page X (KEY) written, then page Y (OTHER) in front and written once.

    Y has a row once a save after the switch committed; that save also wrote X's last
    accrual (a save writes the whole backlog), so the host never writes X again.
    """
    front(host, PAGE)
    heartbeat(host, 0.3)
    assert stored_past(delivery, KEY, 0.1) > 0.1
    signals(host, tab("tab-activated", OTHER, tab_id=2))
    assert stored_past(delivery, OTHER, 0.0) > 0, "no save after the switch wrote page Y"


@contextmanager
def stopped(delivery: Delivery, host: HostProcess) -> Iterator[float]:
    """``host`` stopped (SIGSTOP) holding no write lock, resumed (SIGCONT) on exit.

    The host's timer saves after each step, on its own thread, whenever the machine
    lets it; a stopped host writes nothing, so what the page in front accrues from
    then on is in memory only, however slow the machine. Yields when it stopped
    (``time.monotonic()``); the host's monotonic clock runs on, so on resume the page
    has accrued for the whole stop. An ``activity`` signal first reopens the activity window; the
    stop is retried while it lands inside a save (the lock is held) or too late for
    ``UNWRITTEN_S`` to fit in the window.
    """
    pid = host.proc.pid
    probe = sqlite3.connect(delivery.home / "host.db", timeout=0, isolation_level=None)
    opened = -math.inf
    try:
        while True:
            if time.monotonic() - opened > ACTIVITY_WINDOW_S / 2:
                opened = time.monotonic()
                signals(host, {"signal": "activity"})  # the window closes 15 s on
            os.kill(pid, signal.SIGSTOP)
            while not os.WIFSTOPPED(os.waitpid(pid, os.WUNTRACED)[1]):
                pass
            at = time.monotonic()
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            except sqlite3.OperationalError:  # stopped inside a save: let it finish
                pass
            else:
                if at - opened <= ACTIVITY_WINDOW_S / 2:
                    break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
    finally:
        probe.close()
    try:
        yield at
    finally:
        os.kill(pid, signal.SIGCONT)


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
    # Usually below the first threshold (50 s); a loaded machine that stalls between
    # signals may accrue past it, which the flattr count at the end allows for.
    assert before >= 15
    host.close_stdin()  # the browser closed: the host saves and exits
    assert host.wait() == 0
    assert counters(delivery)[KEY][0] >= before - 0.001  # the page is rounded to 3 places

    again = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    assert page(again, PAGE)["attention"] >= before - 0.001
    # Killed without warning: what was saved survives. The timer thread saves right
    # after each signal; wait for one save past `before` (no fixed sleep).
    front(again, PAGE)
    heartbeat(again, 0.1)
    committed = stored_past(delivery, KEY, before)
    again.kill()
    third = delivery.start(FLATTR_ATTENTION_SCALE=SCALE)
    assert page(third, PAGE)["attention"] >= committed - 0.001
    assert committed > before
    front(third, PAGE)
    mark = len(third.events)
    # Heartbeats until the next threshold (50 s) is reached, then idle: a fixed
    # heartbeat of real time could cross the one after (96 s) on a slow machine.
    end = time.monotonic() + 20
    while page(third, PAGE)["flattrs"] < 1 and time.monotonic() < end:
        heartbeat(third, 0.05)
    signals(third, {"signal": "idle", "state": "idle"})
    third.wait_event(drained(1), timeout=20, since=mark)
    signals(third, {"signal": "window-focus", "windowId": None})
    reached = page(third, PAGE)["flattrs"]  # 1, or 2 on a slow machine (96 s)
    third.wait_event(drained(reached), timeout=20, since=0)
    assert delivery.sent_urls() == [KEY] * reached  # each threshold once


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
    # The running host must not write the cleared counter back from memory: the page,
    # in front again for a moment, counts from zero (about 20 s before the clear).
    signals(host, tab("tab-activated", PAGE, tab_id=1), {"signal": "window-focus", "windowId": 1})
    signals(host, {"signal": "window-focus", "windowId": None})
    assert page(host, PAGE)["attention"] < 5
    assert counters(delivery).get(KEY, (0.0, 0))[0] < 5
    assert OTHER in counters(delivery)  # the other site's page is untouched
    assert cli(delivery, "attention", "clear").stdout.strip() in (
        "deleted 1 attention counters", "deleted 2 attention counters")
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


# -- a deletion touches the deleted page alone -------------------------------------------

def test_cli_clear_url_keeps_another_page_not_written_yet(delivery: Delivery) -> None:
    """Page X is written; page Y is in front and accrues in memory, the host stopped so
    that it writes nothing meanwhile; `clear --url X` must leave Y alone."""
    host = delivery.start(sign_in=False)
    host.request("attention-count-all", enabled=True)
    switch_to_other_page(delivery, host)
    with stopped(delivery, host) as since:
        written = counters(delivery)[OTHER][0]
        cleared = cli(delivery, "attention", "clear", "--url", PAGE)
        assert cleared.returncode == 0, cleared.stderr
        assert KEY not in counters(delivery)
        assert counters(delivery)[OTHER][0] == written
        let_pass(since, UNWRITTEN_S)
    signals(host, {"signal": "window-focus", "windowId": None})  # the next save
    shown = page(host, OTHER)["attention"]
    assert shown >= written + UNWRITTEN_S - 0.001  # what Y accrued in memory survived
    assert page(host, PAGE)["attention"] == 0
    assert stored_past(delivery, OTHER, shown - 0.002) >= shown - 0.002
    assert KEY not in counters(delivery)
    host.close_stdin()
    assert host.wait() == 0
    again = delivery.start(sign_in=False)
    assert page(again, OTHER)["attention"] >= shown - 0.002


def test_prune_by_a_second_host_keeps_another_page_not_written_yet(delivery: Delivery) -> None:
    """As above, the deletion being a second host's prune at its start; the first
    host's later saves must neither bring X back nor lose Y."""
    host = delivery.start(sign_in=False)
    host.request("attention-count-all", enabled=True)
    switch_to_other_page(delivery, host)
    with stopped(delivery, host) as since:
        written = counters(delivery)[OTHER][0]
        # X was last updated 100 days ago; a second host starts and prunes it (the
        # first save of its timer). Stopped, the first host cannot save X after this
        # UPDATE (which would make X fresh again).
        conn = sqlite3.connect(delivery.home / "host.db")
        with conn:
            conn.execute("UPDATE attention_page SET updated_at = updated_at - 8640000 "
                         "WHERE url = ?", (KEY,))
        conn.close()
        second = delivery.start(sign_in=False)
        assert second.request("attention-settings")["ok"]
        deadline = time.monotonic() + 20
        while KEY in counters(delivery) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert KEY not in counters(delivery)
        assert counters(delivery)[OTHER][0] == written
        let_pass(since, UNWRITTEN_S)
    signals(host, {"signal": "window-focus", "windowId": None})  # the next save
    shown = page(host, OTHER)["attention"]
    assert shown >= written + UNWRITTEN_S - 0.001  # what Y accrued in memory survived
    assert stored_past(delivery, OTHER, shown - 0.002) >= shown - 0.002
    assert page(host, PAGE)["attention"] == 0
    assert KEY not in counters(delivery)


# -- refusals name the rule, not the value --------------------------------------------------

def test_refused_requests_leave_no_site_or_url_in_the_log_above_debug(
        delivery: Delivery) -> None:
    host = HostProcess(delivery.launcher, delivery.home,
                       env=delivery.env(FLATTR_LOG_LEVEL="info"))
    delivery.hosts.append(host)
    assert host.request("hello", extension={"id": "x", "version": "1", "build": "t"})["ok"]
    refusals = [
        host.request("attention-site", site="www.secret-one.example", enabled=True),
        host.request("attention-site", site="https://secret-two.example/path", enabled=True),
        host.request("https://secret-three.example/"),  # an unknown type
        host.request("attention-signals", signals=[{"signal": "https://secret-four.example/"}]),
        host.request("flattr", urls=["ftp://secret-five.example/"]),
        host.request("flattr", urls=["https://[secret-six.example/"]),
    ]
    for reply in refusals:
        assert reply["ok"] is False, reply
    # The reply tells the extension which value was refused; the log does not.
    assert "secret-one.example" in refusals[0]["error"]["message"]
    host.close_stdin()
    assert host.wait() == 0
    stderr = host.stderr_text()
    text = "".join(p.read_text() for p in (delivery.home / "logs").glob("*")) + stderr
    assert text.count('"request refused"') == len(refusals)
    assert "is not a site key" in text and "unknown request type" in text
    assert "secret" not in text
