"""Group commit: a burst of ``flattr`` requests already in the input is committed in
one transaction, then each request is answered in order (docs/architecture.md,
"Group commit"). The message loop runs in-process on real pipes and a real SQLite
store; transactions are counted with SQLite's trace callback on the loop's own
connection.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from flattr_host.core.config import Config
from flattr_host.core.logs import Logger
from flattr_host.protocol import framing
from flattr_host.runtime import stdio
from flattr_host.runtime.stdio import EXIT_OK, Loop
from flattr_host.storage import parts as parts_mod
from flattr_host.storage import queue as queue_mod
from flattr_host.storage.queue import PENDING, Queue
from flattr_host.storage.store import Store


def frame(message: dict[str, Any] | bytes) -> bytes:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return framing.HEADER.pack(len(data)) + data


def flattr(request_id: int, *urls: str) -> bytes:
    return frame({"id": request_id, "type": "flattr", "urls": list(urls)})


class Traced:
    """Write transactions begun on the loop's store connection (BEGIN IMMEDIATE)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[str] = []
        real = parts_mod.open_store

        def traced(config: Config, log: Logger) -> Store:
            store = real(config, log)
            if threading.current_thread() is threading.main_thread():
                store.conn.set_trace_callback(self._seen)  # not the submitter's
            return store

        monkeypatch.setattr(parts_mod, "open_store", traced)

    def _seen(self, statement: str) -> None:
        if statement.strip().upper().startswith("BEGIN IMMEDIATE"):
            self.writes.append(statement)


class Run:
    """One message loop: ``data`` is in the pipe before the loop starts, so its first
    read returns all of it (the burst is "completed by the same read")."""

    def __init__(self, home: Path, level: str = "info", **config: Any) -> None:
        self.home = home
        self.config = Config(home=str(home), api_base="http://127.0.0.1:9", log_level=level,
                             retry_base_s=3600.0, **config)
        self.log = Logger(self.config.log_dir, level, stderr=io.StringIO())

    def __call__(self, data: bytes) -> list[dict[str, Any]]:
        assert len(data) < 60_000, "must fit the pipe, to be written before the loop runs"
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        os.write(in_w, data)
        os.close(in_w)
        out = bytearray()

        def drain() -> None:
            while chunk := os.read(out_r, 1 << 20):
                out.extend(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        try:
            assert Loop(self.config, self.log, out_w, in_fd=in_r).run() == EXIT_OK
        finally:
            os.close(out_w)
            reader.join(30)
            os.close(in_r)
            os.close(out_r)
        decoder = framing.Decoder(limit=4 * 1024 * 1024)
        frames = [json.loads(p) for p in decoder.feed(bytes(out))]
        assert decoder.buffered == 0
        return frames

    def stored(self) -> list[str]:
        conn = sqlite3.connect(self.config.db_path)
        try:
            return [r[0] for r in conn.execute("SELECT url FROM queue ORDER BY id")]
        finally:
            conn.close()

    def log_text(self) -> str:
        return (self.home / "logs" / "host.log").read_text(encoding="utf-8")


def replies(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "event" not in f]


def url(n: int) -> str:
    return f"https://burst.example/item/{n}"


# -- the queue ---------------------------------------------------------------------------

def test_enqueue_many_is_one_transaction_with_a_count_per_list(store: Store) -> None:
    begun: list[str] = []
    store.conn.set_trace_callback(lambda s: begun.append(s) if s.startswith("BEGIN") else None)
    queue = Queue(store)
    assert queue.enqueue_many([[url(1)], [url(2), url(3)], [url(4)]], now=5.0).counts == [
        1, 2, 1]
    assert begun == ["BEGIN IMMEDIATE"]
    counts = queue.counts()
    assert counts[PENDING] == 4 and counts["next_attempt_at"] == 5.0
    assert [r[0] for r in store.conn.execute("SELECT url FROM queue ORDER BY id")] == [
        url(n) for n in range(1, 5)]


def test_enqueue_many_stores_nothing_when_the_transaction_fails(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """All or nothing: a failure after the rows were inserted rolls every list back."""
    real = queue_mod.insert_pending

    def insert_then_fail(conn: sqlite3.Connection, urls: list[str], now: float) -> int:
        real(conn, urls, now)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(queue_mod, "insert_pending", insert_then_fail)
    with pytest.raises(sqlite3.OperationalError):
        Queue(store).enqueue_many([[url(1)], [url(2)]], now=1.0)
    assert store.conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 0
    assert Queue(store).counts()[PENDING] == 0


# -- the loop ------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_burst_in_one_read_is_one_commit_then_a_reply_each_then_one_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    traced = Traced(monkeypatch)
    run = Run(tmp_path, level)
    sizes = [1 + n % 3 for n in range(40)]
    data = b""
    sent: list[str] = []
    for n, size in enumerate(sizes):
        urls = [url(len(sent) + i) for i in range(size)]
        sent += urls
        data += flattr(100 + n, *urls)
    frames = run(data)
    assert len(traced.writes) == 1, traced.writes
    answered = replies(frames)
    assert [r["id"] for r in answered] == [100 + n for n in range(len(sizes))]
    assert [r["result"] for r in answered] == [{"queued": size} for size in sizes]
    # Every reply comes before the state event, and there is exactly one.
    last_reply = max(i for i, f in enumerate(frames) if "event" not in f)
    events = [f for f in frames if f.get("event") == "state"]
    assert len(events) == 1, events
    assert frames.index(events[0]) > last_reply
    assert events[0]["state"]["queue"]["pending"] == len(sent)
    assert run.stored() == sent
    if level == "debug":
        # URLs only at debug, one line per request
        assert run.log_text().count('"flattrs queued"') == len(sizes)
    else:
        assert "burst.example" not in run.log_text()


def test_a_mixed_burst_keeps_order_and_refuses_only_the_invalid_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    traced = Traced(monkeypatch)
    run = Run(tmp_path)
    data = (flattr(1, url(1)) + flattr(2, url(2), url(3))
            + flattr(3, "javascript:alert(1)")             # refused, inside the group
            + frame(b"{not json")                          # refused, no id
            + flattr(4, url(4))
            + frame({"id": 5, "type": "get-state"})        # ends the group
            + flattr(6, url(5))
            + frame({"id": 7, "type": "no-such-type"}))
    frames = run(data)
    answered = replies(frames)
    assert [r.get("id") for r in answered] == [1, 2, 3, None, 4, 5, 6, 7]
    assert answered[0]["result"] == {"queued": 1}
    assert answered[1]["result"] == {"queued": 2}
    assert answered[2]["ok"] is False and answered[2]["error"]["code"] == "invalid_request"
    assert answered[3]["ok"] is False and answered[3]["error"]["code"] == "invalid_request"
    assert answered[4]["result"] == {"queued": 1}
    # get-state sees every flattr before it, committed
    assert answered[5]["result"]["queue"]["pending"] == 4
    assert answered[6]["result"] == {"queued": 1}
    assert answered[7]["error"]["code"] == "unknown_type"
    assert len(traced.writes) == 2  # the group before get-state, and the one after
    assert run.stored() == [url(n) for n in range(1, 6)]
    # One state event per group, after that group's replies; a refusal while a group is
    # open (3, the id-less frame, 7) is answered in its place among the group's replies.
    kinds = ["event" if "event" in f else f.get("id") for f in frames]
    assert kinds == [1, 2, 3, None, 4, "event", 5, 6, 7, "event"]


def test_a_group_is_bounded_by_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "GROUP_MAX_URLS", 4)
    traced = Traced(monkeypatch)
    run = Run(tmp_path)
    frames = run(b"".join(flattr(n, url(n)) for n in range(10)))
    assert len(traced.writes) == 3  # 4 + 4 + 2
    assert [r["result"] for r in replies(frames)] == [{"queued": 1}] * 10
    assert [r["id"] for r in replies(frames)] == list(range(10))
    assert run.stored() == [url(n) for n in range(10)]


def test_refusals_count_toward_the_bound(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of bad frames cannot hold a group (and its replies) open."""
    monkeypatch.setattr(stdio, "GROUP_MAX_URLS", 4)
    traced = Traced(monkeypatch)
    run = Run(tmp_path)
    bad = frame(b"[]")
    frames = run(flattr(1, url(1)) + bad * 6 + flattr(2, url(2)))
    # [flattr 1 + 3 refusals] closes at 4; 3 refusals answered at once; [flattr 2]
    assert len(traced.writes) == 2
    kinds = ["event" if "event" in f else f.get("id", "?") for f in frames]
    assert kinds == [1, None, None, None, "event", None, None, None, 2, "event"]


def test_a_busy_store_refuses_every_request_of_the_group_and_stores_nothing(
        tmp_path: Path) -> None:
    """Another process holds the write lock; the loop's bounded wait runs out: each
    request of the group gets ``busy``, and nothing of the group is stored."""
    # The submitter waits for the same lock at its start: the exit need not wait 5 s.
    run = Run(tmp_path, store_wait_s=0.05, exit_grace_s=0.2)
    Store(run.config.db_path, run.log).close()  # the schema exists
    locker = sqlite3.connect(run.config.db_path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        frames = run(b"".join(flattr(n, url(n)) for n in range(1, 6))
                     + frame({"id": 9, "type": "get-state"}))
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    answered = replies(frames)
    assert [r["id"] for r in answered] == [1, 2, 3, 4, 5, 9]
    for reply in answered[:5]:
        assert reply["ok"] is False and reply["error"]["code"] == "busy", reply
        assert "try again" in reply["error"]["message"]
    assert answered[5]["result"]["queue"]["pending"] == 0
    assert run.stored() == []
    assert "burst.example" not in run.log_text()


def test_a_failing_commit_answers_each_request_internal_and_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not busy, not damage (an I/O error): the group's requests are answered as a lone
    request's would be, ``internal``; the requests after the group still work."""
    real = queue_mod.insert_pending
    calls = [0]

    def fail_first(conn: sqlite3.Connection, urls: list[str], now: float) -> int:
        calls[0] += 1
        n = real(conn, urls, now)
        if calls[0] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return n

    monkeypatch.setattr(queue_mod, "insert_pending", fail_first)
    run = Run(tmp_path)
    frames = run(flattr(1, url(1)) + flattr(2, url(2)) + frame({"id": 3, "type": "get-state"})
                 + flattr(4, url(4)))
    answered = replies(frames)
    assert [r["id"] for r in answered] == [1, 2, 3, 4]
    assert [r["error"]["code"] for r in answered[:2]] == ["internal", "internal"]
    assert answered[2]["result"]["queue"]["pending"] == 0
    assert answered[3]["result"] == {"queued": 1}
    assert run.stored() == [url(4)]


ODD_URLS = ["https://ex.example/caf\u00e9/\U0001f600?q=\"x\"&b=\\", "https://ex.example/a%00b",
            "https://ex.example/\u2028tab\t"]


@pytest.mark.parametrize("json_functions", [True, False])
def test_urls_are_stored_exactly_and_in_order_with_or_without_sqlite_json(
        store: Store, monkeypatch: pytest.MonkeyPatch, json_functions: bool) -> None:
    """One INSERT from a JSON array where SQLite has its JSON functions; row by row
    where it was built without them (found once, then remembered)."""
    monkeypatch.setattr(queue_mod, "_json_each", [True])
    if not json_functions:
        monkeypatch.setattr(queue_mod, "_INSERT_FROM_JSON",
                            queue_mod._INSERT_FROM_JSON.replace("json_each(", "json_each_gone("))
    urls = [*ODD_URLS, *(url(n) for n in range(50))]
    assert Queue(store).enqueue_many([urls[:2], urls[2:]], now=1.0).counts == [
        2, len(urls) - 2]
    assert [r[0] for r in store.conn.execute("SELECT url FROM queue ORDER BY id")] == urls
    assert Queue(store).counts()[PENDING] == len(urls)
    assert queue_mod._json_each == [json_functions]


def test_a_damaged_store_answers_each_request_internal_and_is_replaced(
        tmp_path: Path) -> None:
    """Real damage (the queue's pages garbled on disk) met by a group's insert: each
    request of the group is answered ``internal`` (nothing of it stored), the store is
    replaced as after a lone request (docs/protocol.md#state), and the request after
    the group is answered by the new store."""
    run = Run(tmp_path)
    db = Path(run.config.db_path)
    with Store(db, run.log) as store:
        Queue(store).enqueue([f"https://old.example/{'p' * 60}/{i}" for i in range(600)], 1.0)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = [int(r[0]) for r in conn.execute(
            "SELECT pageno FROM dbstat WHERE name IN ('queue', 'queue_by_status') "
            "AND pagetype = 'leaf'")]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    assert len(pages) >= 6
    with open(db, "r+b") as handle:
        for page in pages:
            handle.seek((page - 1) * size)
            handle.write(os.urandom(size))
    frames = run(flattr(1, url(1)) + flattr(2, url(2)) + flattr(3, url(3))
                 + frame({"id": 4, "type": "get-state"}))
    answered = replies(frames)
    assert [r["id"] for r in answered] == [1, 2, 3, 4]
    assert [r["error"]["code"] for r in answered[:3]] == ["internal"] * 3
    state = answered[3]["result"]
    assert state["problem"]["code"] == "store_replaced", state
    assert not {url(1), url(2), url(3)} & set(run.stored())
    assert "store was damaged; kept aside and replaced" in run.log_text()
