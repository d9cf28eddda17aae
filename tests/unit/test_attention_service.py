"""The attention glue: engine + SQLite rows + queue, on a virtual clock.

Real SQLite files, the real queue; the timer thread is off (``timer=False``) and
``tick()`` stands in for it, so every time in these tests is virtual. Numbers are
the documented ones (docs/attention.md): first normal threshold 50 s, activity
window 15 s, heartbeat 10 s.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flattr_host.attention import store as rows
from flattr_host.attention.service import AttentionService
from flattr_host.core.logs import Logger
from flattr_host.protocol.messages import AttentionSignal, parse_request
from flattr_host.storage.queue import Queue
from flattr_host.storage.store import Store

PAGE = "https://blog.example/post?utm=1#c"
KEY = "https://blog.example/post"
DAY = 86400.0


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def sig(kind: str, **fields: Any) -> AttentionSignal:
    """A signal through the real parser (the wire names), as the service gets it."""
    request = parse_request({"id": 1, "type": "attention-signals",
                             "signals": [{"signal": kind, **fields}]})
    (signal,) = request.body.signals  # type: ignore[attr-defined]
    assert isinstance(signal, AttentionSignal)
    return signal


def front(url: str, tab: int = 1, window: int = 1) -> list[AttentionSignal]:
    return [sig("window-focus", windowId=window),
            sig("tab-activated", tabId=tab, windowId=window, url=url, incognito=False)]


class Rig:
    """A service on a store file, with a virtual monotonic and wall clock."""

    def __init__(self, path: Path, log: Logger, **kwargs: Any) -> None:
        self.path, self.log, self.kwargs = path, log, kwargs
        self.mono = Clock(1000.0)
        self.wall = Clock(1_700_000_000.0)
        self.notified: list[int] = []
        self.store = Store(path, log)
        self.svc = self._make()

    def _make(self) -> AttentionService:
        return AttentionService(self.store, self.log, monotonic=self.mono, wall=self.wall,
                                timer=False, on_queued=self.notified.append, **self.kwargs)

    def advance(self, seconds: float) -> int:
        self.mono.t += seconds
        self.wall.t += seconds
        return self.svc.tick()

    def restart(self) -> None:
        self.svc.close()
        self.store.close()
        self.store = Store(self.path, self.log)
        self.svc = self._make()

    def queued(self) -> list[str]:
        return [item["url"] for item in Queue(self.store).items()]

    def counters(self) -> dict[str, dict[str, Any]]:
        with self.store.read() as conn:
            return {r["url"]: r for r in rows.load_counters(conn)}

    def close(self) -> None:
        self.svc.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path, log: Logger) -> Any:
    made = Rig(tmp_path / "host.db", log)
    yield made
    made.close()


def test_nothing_counts_by_default(rig: Rig) -> None:
    rig.svc.signals(front(PAGE))
    assert rig.svc.next_wakeup() is None  # nothing accrues: no timer armed
    for _ in range(10):
        rig.svc.signals([sig("activity")])
        assert rig.advance(10) == 0
    assert rig.queued() == []
    assert rig.counters() == {}
    assert rig.svc.settings() == {"countAll": False, "sites": [], "active": False,
                                  "heartbeatMs": 10000}


def test_opted_in_page_in_front_is_queued_at_50_s_with_counters_in_the_same_commit(
        rig: Rig) -> None:
    settings = rig.svc.set_site("blog.example", True)
    assert settings["sites"] == ["blog.example"] and settings["active"] is True
    rig.svc.signals(front(PAGE))
    # Heartbeats every 10 s keep the 15 s window open; the timer is due at 50 s.
    for _ in range(4):
        rig.advance(10)
        rig.svc.signals([sig("activity")])
    assert rig.svc.next_wakeup() == pytest.approx(rig.mono.t + 10)
    assert rig.queued() == []
    assert rig.advance(10) == 1
    assert rig.notified == [1]
    assert rig.queued() == [KEY]  # the normalized URL
    counter = rig.counters()[KEY]
    assert counter["next_index"] == 1 and counter["attention_s"] == pytest.approx(50)


def test_window_closes_without_heartbeat_and_idle_stops_accrual(rig: Rig) -> None:
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    assert rig.svc.next_wakeup() == pytest.approx(rig.mono.t + 15)  # the window closing
    rig.advance(100)
    assert rig.counters()[KEY]["attention_s"] == pytest.approx(15)
    rig.svc.signals([sig("activity"), sig("idle", state="idle")])
    rig.advance(100)
    rig.svc.signals([sig("activity")])  # heartbeats while idle do not count
    rig.advance(100)
    assert rig.counters()[KEY]["attention_s"] == pytest.approx(15)
    assert rig.queued() == []


def test_background_tab_and_blur_do_not_count(rig: Rig) -> None:
    rig.svc.set_count_all(True)
    rig.svc.signals(front(PAGE, tab=1))
    rig.svc.signals([sig("tab-activated", tabId=2, windowId=1, url="https://other.example/",
                         incognito=False)])
    rig.svc.signals([sig("window-focus", windowId=None)])
    for _ in range(20):
        rig.advance(10)
        rig.svc.signals([sig("activity")])
    assert rig.queued() == []
    assert KEY not in rig.counters()  # the background tab got nothing at all


def test_incognito_is_never_counted_nor_stored(rig: Rig) -> None:
    rig.svc.set_count_all(True)
    private = sig("tab-activated", tabId=1, windowId=1, url=PAGE, incognito=True)
    assert private.url is None  # dropped by the parser already
    rig.svc.signals([sig("window-focus", windowId=1), private])
    for _ in range(10):
        rig.advance(10)
        rig.svc.signals([sig("activity")])
    assert rig.counters() == {} and rig.queued() == []


def test_audio_in_background_counts(rig: Rig) -> None:
    rig.svc.set_site("radio.example", True)
    rig.svc.signals([sig("window-focus", windowId=None),
                     sig("audible-changed", tabId=3, windowId=1, url="https://radio.example/",
                         incognito=False, audible=True, muted=False)])
    rig.advance(139)
    assert rig.queued() == []
    assert rig.advance(1) == 1  # an audio page: first threshold 140 s
    assert rig.queued() == ["https://radio.example/"]
    assert rig.counters()["https://radio.example/"]["is_audio"] == 1


def test_restart_keeps_counters(rig: Rig) -> None:
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    rig.advance(10)
    rig.svc.signals([sig("activity")])
    rig.advance(10)
    rig.svc.signals([sig("activity")])
    rig.advance(10)
    rig.restart()  # close() saves the 30 s accrued so far
    assert rig.counters()[KEY]["attention_s"] == pytest.approx(30)
    assert rig.svc.page(PAGE)["attention"] == pytest.approx(30)
    rig.svc.signals([sig("reset"), *front(PAGE)])
    rig.advance(10)
    rig.svc.signals([sig("activity")])
    rig.advance(10)  # 30 + 20 = 50
    assert rig.queued() == [KEY]


def test_manual_flattr_queues_the_page_as_seen_and_jumps(rig: Rig) -> None:
    queued, page = rig.svc.manual(PAGE)  # not opted in: a click is consent
    assert queued == 1
    assert page is not None
    assert (page["attention"], page["flattrs"], page["nextThreshold"]) == (50, 1, 96)
    assert page["counted"] is False and page["site"] == "blog.example"
    assert rig.queued() == [PAGE]  # exactly what the user clicked on
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    for _ in range(4):
        rig.advance(10)
        rig.svc.signals([sig("activity")])
    assert rig.advance(6) == 1  # 50 + 46 = 96: the threshold after the jump
    assert rig.queued() == [PAGE, KEY]


def test_manual_flattr_of_an_uncountable_url_is_still_queued(rig: Rig) -> None:
    url = "https://[::1]:99999/x"  # the normalizer refuses the port
    queued, page = rig.svc.manual(url)
    assert (queued, page) == (1, None)
    assert rig.queued() == [url]


def test_opt_out_stops_counting_and_never_queues(rig: Rig) -> None:
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    rig.advance(10)
    rig.svc.set_site("blog.example", False)
    for _ in range(20):
        rig.svc.signals([sig("activity")])
        rig.advance(10)
    assert rig.counters()[KEY]["attention_s"] == pytest.approx(10)
    assert rig.queued() == []
    assert rig.svc.page(PAGE)["counted"] is False


def test_page_status_for_the_popup(rig: Rig) -> None:
    assert rig.svc.page("chrome://settings") == {"countable": False}
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    rig.mono.t += 12
    page = rig.svc.page(PAGE)  # accrued up to now, without waiting for the timer
    assert page == {"countable": True, "url": KEY, "site": "blog.example", "counted": True,
                    "siteEnabled": True, "countAll": False, "attention": 12.0, "audio": 0.0,
                    "audioPage": False, "flattrs": 0, "nextThreshold": 50}


def test_scale_shrinks_real_time_and_heartbeat(tmp_path: Path, log: Logger) -> None:
    rig = Rig(tmp_path / "s.db", log, scale=0.01)
    try:
        rig.svc.set_site("blog.example", True)
        assert rig.svc.settings()["heartbeatMs"] == 100
        rig.svc.signals(front(PAGE))
        rig.advance(0.1)
        rig.svc.signals([sig("activity")])
        rig.advance(0.1)
        rig.svc.signals([sig("activity")])
        rig.advance(0.1)
        rig.svc.signals([sig("activity")])
        rig.advance(0.1)
        rig.svc.signals([sig("activity")])
        assert rig.queued() == []
        assert rig.advance(0.1) == 1  # 0.5 real seconds = 50 nominal
    finally:
        rig.close()


def test_prune_drops_old_counters_at_start(rig: Rig, tmp_path: Path) -> None:
    rig.svc.manual(PAGE)
    rig.svc.manual("https://old.example/")
    with rig.store.write() as conn:
        conn.execute("UPDATE attention_page SET updated_at = ? WHERE url = ?",
                     (rig.wall.t - 91 * DAY, "https://old.example/"))
    rig.restart()  # the start only reads: pruning is the first save's job (the timer's)
    assert rig.svc.page("https://old.example/")["flattrs"] == 0
    assert set(rig.counters()) == {KEY}


def test_prune_runs_daily_from_the_timer(tmp_path: Path, log: Logger) -> None:
    rig = Rig(tmp_path / "p.db", log, max_age_s=2 * DAY)
    try:
        rig.svc.manual(PAGE)
        rig.advance(DAY + 1)
        assert KEY in rig.counters()  # one day old: kept
        rig.advance(DAY + 1)  # the next daily prune sees it 2 days old
        assert rig.counters() == {}
        assert rig.svc.page(PAGE)["flattrs"] == 0
    finally:
        rig.close()


def test_clear_from_another_connection_is_seen_by_the_running_service(rig: Rig) -> None:
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    rig.advance(10)
    rig.svc.signals([sig("activity")])
    with sqlite3.connect(rig.path) as other:  # what `flattr-host attention clear` does
        rows.delete_counters(other)
    rig.advance(1)  # the running engine sees the clear and forgets its counter
    assert rig.counters() == {}
    rig.advance(1)  # counting starts again from zero
    assert rig.counters()[KEY]["attention_s"] == pytest.approx(1)


def test_another_host_already_queued_the_threshold(rig: Rig, tmp_path: Path,
                                                   log: Logger) -> None:
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    rig.advance(10)
    rig.svc.signals([sig("activity")])
    # A second host process on the same store reaches the first threshold first.
    with rig.store.write() as conn:
        conn.execute("UPDATE attention_page SET next_index = 1, attention_s = 55")
    for _ in range(4):
        rig.advance(10)
        rig.svc.signals([sig("activity")])
    assert rig.queued() == []  # ordinal 1 was already queued by the other host
    assert rig.counters()[KEY]["next_index"] == 1
    assert rig.counters()[KEY]["attention_s"] == pytest.approx(55)  # never lowered


def test_failed_commit_is_retried_without_losing_the_flattr(rig: Rig) -> None:
    rig.svc.set_site("blog.example", True)
    rig.svc.signals(front(PAGE))
    with rig.store.write() as conn:  # make the queue refuse inserts for a moment
        conn.execute("CREATE TRIGGER no_insert BEFORE INSERT ON queue "
                     "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    for _ in range(4):
        rig.advance(10)
        rig.svc.signals([sig("activity")])
    assert rig.advance(10) == 0  # the crossing: its transaction failed, nothing half-written
    assert rig.counters()[KEY]["next_index"] == 0
    with rig.store.write() as conn:
        conn.execute("DROP TRIGGER no_insert")
    assert rig.advance(1) == 1
    assert rig.queued() == [KEY]
    assert rig.counters()[KEY]["next_index"] == 1


def test_timer_thread_fires_without_polling(tmp_path: Path, log: Logger) -> None:
    """The real timer thread, on the real monotonic clock, with a tiny scale."""
    store = Store(tmp_path / "t.db", log)
    loop_store = Store(tmp_path / "t.db", log)  # the message loop's own connection
    fired = threading.Event()
    svc = AttentionService(store, log, requests=loop_store, scale=0.002,
                           on_queued=lambda _n: fired.set())
    try:
        svc.set_site("blog.example", True)
        svc.signals(front(PAGE))
        started = time.monotonic()
        while not fired.is_set() and time.monotonic() - started < 5:
            svc.signals([sig("activity")])  # the heartbeat (20 ms at this scale)
            fired.wait(0.02)
        assert fired.is_set()
        assert [i["url"] for i in Queue(loop_store).items()] == [KEY]
    finally:
        svc.close()
        store.close()
        loop_store.close()


# -- deletions touch the deleted pages only; another process's lock ----------------------

OTHER = "https://other.example/y"


def test_clearing_one_page_keeps_another_page_not_written_yet(rig: Rig) -> None:
    rig.svc.set_count_all(True)
    rig.svc.signals(front(PAGE))
    rig.advance(5)  # the page is written
    rig.svc.signals([sig("tab-activated", tabId=2, windowId=1, url=OTHER, incognito=False)])
    rig.mono.t += 7  # the other page accrues in memory only
    rig.wall.t += 7
    assert OTHER not in rig.counters()
    with sqlite3.connect(rig.path) as other:  # `flattr-host attention clear --url PAGE`
        rows.delete_counters(other, [KEY])
    rig.svc.signals([sig("window-focus", windowId=None)])
    assert rig.counters()[OTHER]["attention_s"] == pytest.approx(7)
    assert KEY not in rig.counters()
    assert rig.svc.page(PAGE)["attention"] == 0
    rig.restart()
    assert rig.svc.page(OTHER)["attention"] == pytest.approx(7)


def test_another_hosts_prune_keeps_pages_it_did_not_delete(rig: Rig, tmp_path: Path,
                                                           log: Logger) -> None:
    rig.svc.set_count_all(True)
    rig.svc.signals(front(PAGE))
    rig.advance(5)
    rig.svc.signals([sig("tab-activated", tabId=2, windowId=1, url=OTHER, incognito=False)])
    rig.mono.t += 7
    rig.wall.t += 7
    with rig.store.write() as conn:
        conn.execute("UPDATE attention_page SET updated_at = ? WHERE url = ?",
                     (rig.wall.t - 91 * DAY, KEY))
    second = Rig(tmp_path / "host.db", log)  # a second host starts and prunes
    second.svc.tick()
    second.close()
    rig.svc.signals([sig("window-focus", windowId=None)])
    assert set(rig.counters()) == {OTHER}
    assert rig.counters()[OTHER]["attention_s"] == pytest.approx(7)


def test_clearing_a_page_only_in_memory_forgets_it(rig: Rig) -> None:
    rig.svc.set_count_all(True)
    rig.svc.signals(front(PAGE))
    rig.mono.t += 7  # accrued, not written
    with sqlite3.connect(rig.path) as other:
        assert rows.delete_counters(other, [KEY]) == []  # no row, still recorded
    rig.svc.signals([sig("window-focus", windowId=None)])
    assert rig.counters() == {}
    assert rig.svc.page(PAGE)["attention"] == 0


def test_clearing_a_site_forgets_its_pages_only(rig: Rig) -> None:
    rig.svc.set_count_all(True)
    rig.svc.signals(front(PAGE))
    rig.advance(3)
    rig.svc.signals([sig("tab-activated", tabId=2, windowId=1, url=OTHER, incognito=False)])
    rig.mono.t += 4
    with sqlite3.connect(rig.path) as other:
        assert rows.delete_site(other, "blog.example") == [KEY]
    rig.svc.signals([sig("window-focus", windowId=None)])
    assert set(rig.counters()) == {OTHER}


def test_deletions_older_than_the_records_fall_back_to_rows_written(rig: Rig) -> None:
    rig.svc.set_count_all(True)
    rig.svc.signals(front(PAGE))
    rig.advance(3)
    rig.svc.signals([sig("tab-activated", tabId=2, windowId=1, url=OTHER, incognito=False)])
    rig.mono.t += 4
    with sqlite3.connect(rig.path) as other:
        for _ in range(rows.KEEP_DELETIONS + 1):
            rows.delete_counters(other, ["https://unrelated.example/"])
        rows.delete_counters(other, [KEY])
    rig.svc.signals([sig("window-focus", windowId=None)])
    assert set(rig.counters()) == {OTHER}  # KEY was written by us and is gone; OTHER kept


def test_deletion_records_are_bounded(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "d.db") as conn:
        conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE attention_page (url TEXT PRIMARY KEY, updated_at REAL)")
        for _ in range(rows.KEEP_DELETIONS * 2):
            rows.delete_counters(conn, ["https://a.example/"])
        records = conn.execute("SELECT COUNT(*) FROM kv WHERE key GLOB 'attention_deleted:*'")
        assert records.fetchone()[0] == rows.KEEP_DELETIONS
        gen = rows.generation(conn)
        deleted = rows.deletions_since(conn, gen - 1)
        assert deleted is not None and deleted("https://a.example/")
        assert not deleted("https://b.example/")
        assert rows.deletions_since(conn, 0) is None  # the records do not reach back


class Locker:
    """Another process's connection holding the write lock (BEGIN IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def test_manual_flattr_while_locked_is_busy_and_changes_nothing(tmp_path: Path,
                                                                log: Logger) -> None:
    from flattr_host.core.errors import StoreBusy

    rig = Rig(tmp_path / "b.db", log)
    try:
        rig.store.bound_writes(0.05)
        locker = Locker(rig.path)
        with pytest.raises(StoreBusy):
            rig.svc.manual(PAGE)
        with pytest.raises(StoreBusy):
            rig.svc.set_site("blog.example", True)
        assert rig.svc.page(PAGE)["flattrs"] == 0  # the engine was not touched
        locker.release()
        assert rig.svc.manual(PAGE)[0] == 1
        assert rig.svc.page(PAGE)["flattrs"] == 1
        assert rig.queued() == [PAGE]
    finally:
        rig.close()


def test_timer_saves_off_the_request_path_while_another_process_holds_the_lock(
        tmp_path: Path, log: Logger) -> None:
    """Signals and popup reads never wait for the lock; what accrued is saved after."""
    path = tmp_path / "l.db"
    store = Store(path, log)
    loop_store = Store(path, log)
    loop_store.bound_writes(0.05)
    mono = Clock(1000.0)
    svc = AttentionService(store, log, requests=loop_store, monotonic=mono, retry_s=0.01)
    try:
        svc.set_count_all(True)
        locker = Locker(path)
        svc.signals(front(PAGE))
        for _ in range(5):
            mono.t += 10
            svc.signals([sig("activity")])  # returns at once: the timer thread saves
        mono.t += 10  # 60 s: the first threshold is decided in memory
        assert svc.page(PAGE)["flattrs"] == 1
        assert Queue(loop_store).items() == []
        locker.release()
        deadline = time.monotonic() + 10
        while not Queue(loop_store).items() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [i["url"] for i in Queue(loop_store).items()] == [KEY]
        with loop_store.read() as conn:
            (stored,) = [r for r in rows.load_counters(conn) if r["url"] == KEY]
        assert stored["next_index"] == 1 and stored["attention_s"] >= 50
    finally:
        svc.close()
        store.close()
        loop_store.close()


def test_a_deletion_record_with_an_odd_number_is_dropped(tmp_path: Path) -> None:
    """A record key only a damaged or edited store holds ("²" is a digit to
    str.isdigit(), no number to int()) is pruned like an old record, not a crash."""
    with sqlite3.connect(tmp_path / "d.db") as conn:
        conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE attention_page (url TEXT PRIMARY KEY, updated_at REAL)")
        conn.execute("INSERT INTO kv VALUES ('attention_deleted:\u00b2', '[]')")
        rows.delete_counters(conn, ["https://a.example/"])
        found = conn.execute("SELECT key FROM kv WHERE key GLOB 'attention_deleted:*'")
        keys = [key for (key,) in found]
        assert "attention_deleted:\u00b2" not in keys and len(keys) == 1
