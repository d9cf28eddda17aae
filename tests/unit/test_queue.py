"""Queue items and their transitions, leases and retention."""

from __future__ import annotations

import pytest

from flattr_host.core.errors import TransitionError
from flattr_host.storage.queue import ALLOWED, DONE, FAILED, IN_FLIGHT, PENDING, Queue, _move
from flattr_host.storage.store import Store

URLS = [f"https://site.example/{i}" for i in range(5)]


@pytest.fixture
def queue(store: Store) -> Queue:
    return Queue(store)


def statuses(store: Store) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT status FROM queue ORDER BY id")]


def test_enqueue_and_counts(queue: Queue) -> None:
    assert queue.enqueue(URLS, now=100.0) == 5
    counts = queue.counts()
    assert counts[PENDING] == 5 and counts[IN_FLIGHT] == 0
    assert counts["next_attempt_at"] == 100.0


def test_claim_leases_in_order_and_counts_attempts(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS, now=100.0)
    batch = queue.claim("me", now=100.0, lease_s=30, limit=3)
    assert batch is not None
    assert [i.url for i in batch.items] == URLS[:3] and batch.attempt == 1
    assert statuses(store) == [IN_FLIGHT] * 3 + [PENDING] * 2
    second = queue.claim("other", now=100.0, lease_s=30, limit=10)
    assert second is not None and [i.url for i in second.items] == URLS[3:]
    assert queue.claim("third", now=100.0, lease_s=30, limit=10) is None


def test_items_not_yet_due_are_not_claimed(queue: Queue) -> None:
    queue.enqueue(URLS[:1], now=100.0)
    batch = queue.claim("me", 100.0, 30, 10)
    assert batch is not None
    queue.release(batch, next_attempt_at=160.0, reason="http 503", now=100.0)
    assert queue.claim("me", 159.0, 30, 10) is None
    assert queue.next_due(159.0) == 160.0
    again = queue.claim("me", 160.0, 30, 10)
    assert again is not None and again.attempt == 2


def test_expired_lease_is_reclaimed_by_another_process(queue: Queue) -> None:
    queue.enqueue(URLS[:2], now=0.0)
    dead = queue.claim("dead", 0.0, lease_s=10, limit=10)
    assert dead is not None
    assert queue.claim("alive", 9.0, 10, 10) is None
    assert queue.next_due(9.0) == 10.0
    taken = queue.claim("alive", 10.0, 10, 10)
    assert taken is not None and len(taken.items) == 2
    # The dead owner cannot settle items it no longer holds.
    assert queue.complete(dead, {}, 11.0) == 0
    assert queue.complete(taken, {i.id: "ok" for i in taken.items}, 11.0) == 2


def test_renew_keeps_the_lease(queue: Queue) -> None:
    queue.enqueue(URLS[:1], now=0.0)
    batch = queue.claim("me", 0.0, 10, 10)
    assert batch is not None
    assert queue.renew(batch, 8.0, 10)
    assert queue.claim("other", 12.0, 10, 10) is None
    assert queue.claim("other", 18.0, 10, 10) is not None
    assert not queue.renew(batch, 19.0, 10)


def test_complete_records_outcomes(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS[:2], now=0.0)
    batch = queue.claim("me", 0.0, 10, 10)
    assert batch is not None
    queue.complete(batch, {batch.items[0].id: "ok", batch.items[1].id: "flattr_once"}, 1.0)
    rows = store.conn.execute("SELECT status, outcome FROM queue ORDER BY id").fetchall()
    assert rows == [(DONE, "ok"), (DONE, "flattr_once")]


def test_fail_then_retry_failed_then_clear(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS[:2], now=0.0)
    batch = queue.claim("me", 0.0, 10, 10)
    assert batch is not None
    assert queue.fail(batch, "http 400 invalid_request", 1.0) == 2
    assert queue.counts()[FAILED] == 2
    assert [i["reason"] for i in queue.items(FAILED)] == ["http 400 invalid_request"] * 2
    assert queue.retry_failed(2.0) == 2
    assert statuses(store) == [PENDING, PENDING]
    batch = queue.claim("me", 2.0, 10, 10)
    assert batch is not None and batch.attempt == 1
    queue.fail(batch, "again", 3.0)
    assert queue.clear_failed() == 2
    assert statuses(store) == []


def test_pause_release_does_not_count_an_attempt(queue: Queue) -> None:
    queue.enqueue(URLS[:1], now=0.0)
    batch = queue.claim("me", 0.0, 10, 10)
    assert batch is not None
    queue.release(batch, 0.0, "http 401", 0.0, count_attempt=False)
    again = queue.claim("me", 0.0, 10, 10)
    assert again is not None and again.attempt == 1


def test_prune_done_and_expire_old_pending(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS[:1], now=0.0)
    batch = queue.claim("me", 0.0, 10, 10)
    assert batch is not None
    queue.complete(batch, {}, 1.0)
    queue.enqueue(URLS[1:2], now=50.0)
    queue.enqueue(URLS[2:3], now=150.0)
    pruned, expired = queue.prune(now=200.0, done_retention_s=100.0, pending_expiry_s=100.0)
    assert (pruned, expired) == (1, 1)
    items = queue.items()
    assert [(i["url"], i["status"]) for i in items] == [(URLS[1], "expired"), (URLS[2], PENDING)]
    assert "not delivered within 100 s" in items[0]["reason"]


def test_illegal_move_raises_and_rolls_back(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS[:2], now=0.0)
    assert (DONE, PENDING) not in ALLOWED
    ids = [r[0] for r in store.conn.execute("SELECT id FROM queue")]
    with pytest.raises(TransitionError, match="cannot move from pending to done"), \
            store.write() as conn:
        _move(conn, ids, PENDING, DONE)
    # Moving a mix where one item is not in the source state changes none of them.
    batch = queue.claim("me", 0.0, 10, 1)
    assert batch is not None
    with pytest.raises(TransitionError, match="1 of 2 items are not pending"), \
            store.write() as conn:
        _move(conn, ids, PENDING, IN_FLIGHT)
    assert statuses(store) == [IN_FLIGHT, PENDING]


def test_reschedule_pending_makes_backed_off_items_due(queue: Queue) -> None:
    queue.enqueue(URLS[:1], now=0.0)
    batch = queue.claim("me", 0.0, 10, 10)
    assert batch is not None
    queue.release(batch, 1000.0, "http 503", 0.0)
    assert queue.reschedule_pending(5.0) == 1
    assert queue.claim("me", 5.0, 10, 10) is not None


def test_trigger_counts_match_a_full_count(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS, now=0.0)
    batch = queue.claim("me", 0.0, 10, 2)
    assert batch is not None
    queue.fail(batch, "x", 1.0)
    batch = queue.claim("me", 1.0, 10, 1)
    assert batch is not None
    queue.complete(batch, {}, 2.0)
    queue.clear_failed()
    full = dict(store.conn.execute("SELECT status, COUNT(*) FROM queue GROUP BY status"))
    counts = queue.counts()
    for status in ("pending", "in_flight", "done", "failed", "expired"):
        assert counts[status] == full.get(status, 0), status
    assert (counts["pending"], counts["done"], counts["failed"]) == (2, 1, 0)


def test_migration_counts_existing_rows(tmp_path: object, log: object) -> None:
    """A store created before the counts table gets correct counts when migrated."""
    import sqlite3
    from pathlib import Path

    from flattr_host.storage import store as store_mod

    path = Path(str(tmp_path)) / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in store_mod.split_statements(store_mod.MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO queue (url, status, created_at, updated_at) "
                 "VALUES ('https://a/', 'pending', 0, 0), ('https://b/', 'failed', 0, 0)")
    conn.close()
    with store_mod.Store(path, log) as migrated:  # type: ignore[arg-type]
        counts = Queue(migrated).counts()
    assert (counts["pending"], counts["failed"], counts["done"]) == (1, 1, 0)


def test_outcome_counts_follow_completion_and_pruning(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS[:3], now=100.0)
    first = queue.claim("me", now=100.0, lease_s=30, limit=2)
    assert first is not None
    queue.complete(first, {first.items[0].id: "ok", first.items[1].id: "flattr_once"}, 100.0)
    assert queue.counts()["outcomes"] == {"ok": 1, "flattr_once": 1}
    queue.enqueue(URLS[3:], now=150.0)
    second = queue.claim("me", now=150.0, lease_s=30, limit=10)
    assert second is not None
    queue.complete(second, {item.id: "accepted" for item in second.items}, 150.0)
    assert queue.counts()["outcomes"] == {"ok": 1, "flattr_once": 1, "accepted": 3}
    assert queue.prune(now=220.0, done_retention_s=100.0, pending_expiry_s=1e9) == (2, 0)
    assert queue.counts()["outcomes"] == {"accepted": 3}


def test_outcome_counts_of_an_older_store_are_counted_once(queue: Queue, store: Store) -> None:
    queue.enqueue(URLS[:2], now=100.0)
    batch = queue.claim("me", now=100.0, lease_s=30, limit=1)
    assert batch is not None
    queue.complete(batch, {batch.items[0].id: "ok"}, 100.0)
    store.conn.execute("UPDATE kv SET value = 'not json' WHERE key = 'queue_outcomes'")
    assert queue.counts()["outcomes"] == {}  # a read never scans
    batch = queue.claim("me", now=100.0, lease_s=30, limit=1)
    assert batch is not None
    queue.complete(batch, {batch.items[0].id: "flattr_owner"}, 100.0)
    assert queue.counts()["outcomes"] == {"ok": 1, "flattr_owner": 1}
