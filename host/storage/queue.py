"""The durable flattr queue: items and their transitions, in the SQLite store.

An item moves ``pending -> in_flight -> done | failed``; a retryable failure or an
expired lease moves it back to ``pending``; a pending item older than the expiry
limit becomes ``expired`` (recorded, never silently dropped); ``failed`` goes back
to ``pending`` on request. :data:`ALLOWED` is the whole table: :func:`_move` refuses
anything else by raising :class:`TransitionError` inside the transaction, which
rolls it back, so an illegal transition changes nothing.

Several host processes share one store. A process claims a batch by writing its
own id and a short lease expiry on the items inside ``BEGIN IMMEDIATE``; another
process only takes items whose lease has expired, so no two processes send the
same item at the same time, and items held by a process that died are sent again
soon after its lease runs out. Nothing is deleted before the server has answered.
"""

from __future__ import annotations

# The C module, as the store imports it (no datetime adapters; docs/performance.md).
import _sqlite3 as sqlite3
import os

from flattr_host.core.errors import TransitionError
from flattr_host.core.values import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from flattr_host.storage.store import Store

PENDING = "pending"
IN_FLIGHT = "in_flight"
DONE = "done"
FAILED = "failed"
EXPIRED = "expired"
STATUSES = (PENDING, IN_FLIGHT, DONE, FAILED, EXPIRED)

#: Every legal move of an item.
ALLOWED = frozenset(
    {
        (PENDING, IN_FLIGHT),  # claimed for a request
        (IN_FLIGHT, DONE),  # the server accepted it (any per-URL outcome)
        (IN_FLIGHT, FAILED),  # the server refused it for good (4xx)
        (IN_FLIGHT, PENDING),  # retryable failure, pause, or lease expired
        (PENDING, EXPIRED),  # waited longer than the expiry limit
        (FAILED, PENDING),  # the user asked to retry failed items
    }
)


class Item(Value):
    __slots__ = ("id", "url")
    id: int
    url: str


class Batch(Value):
    __slots__ = ("id", "owner", "items", "attempt")
    id: str
    owner: str
    items: tuple[Item, ...]
    attempt: int  # the highest attempt number among the items (1 = first try)


class Enqueued(Value):
    """What :meth:`Queue.enqueue_many` committed.

    ``data_version`` is the store's ``PRAGMA data_version`` read inside the write
    transaction: when it equals one read earlier on the same connection, no other
    connection committed in between, so a state read then plus these items is the
    state now (runtime.service.Service keeps its cache so, docs/performance.md).
    """

    __slots__ = ("counts", "data_version")
    counts: list[int]
    data_version: int


def new_id() -> str:
    """A random id for a lease owner or a batch (``uuid`` costs more to import)."""
    return os.urandom(16).hex()



def _move(
    conn: sqlite3.Connection,
    ids: Sequence[int],
    source: str,
    target: str,
    owner: str | None = None,
    **columns: Any,
) -> None:
    """Move exactly ``ids`` from ``source`` to ``target`` or raise (rolling back)."""
    if (source, target) not in ALLOWED:
        raise TransitionError(f"queue items cannot move from {source} to {target}")
    if not ids:
        return
    sets = ", ".join(["status = ?"] + [f"{name} = ?" for name in columns])
    marks = ",".join("?" * len(ids))
    where = f"id IN ({marks}) AND status = ?"
    params: list[Any] = [target, *columns.values(), *ids, source]
    if owner is not None:
        where += " AND lease_owner = ?"
        params.append(owner)
    changed = conn.execute(f"UPDATE queue SET {sets} WHERE {where}", params).rowcount  # noqa: S608
    if changed != len(ids):
        raise TransitionError(
            f"{len(ids) - changed} of {len(ids)} items are not {source}"
            + (" under this lease" if owner else "")
        )


#: One statement for the whole list: SQLite reads the URLs from one JSON array
#: parameter. Per row it costs about half of ``executemany`` (one statement step and
#: one AUTOINCREMENT update instead of one per row; docs/performance.md, enqueue).
_INSERT_FROM_JSON = (
    "INSERT INTO queue (url, status, created_at, updated_at, next_attempt_at) "
    "SELECT value, ?1, ?2, ?2, ?2 FROM json_each(?3) ORDER BY key"
)
_INSERT_ROWS = (
    "INSERT INTO queue (url, status, created_at, updated_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
#: False once SQLite was found built without its JSON functions (SQLITE_OMIT_JSON).
_json_each = [True]


def insert_pending(conn: sqlite3.Connection, urls: Iterable[str], now: float) -> int:
    """Insert ``urls`` as pending items, in order, inside the caller's write transaction.

    The only insert into the queue: it adds its count once (store migration 2), so
    every caller (a ``flattr`` request, an attention threshold) keeps the counts right.
    """
    listed = list(urls)
    if not listed:
        return 0
    if _json_each[0]:
        import json

        try:
            # ensure_ascii=False: UTF-8 as is, SQLite unescapes only quotes,
            # backslashes and control characters.
            conn.execute(_INSERT_FROM_JSON, (PENDING, now, json.dumps(listed,
                                                                      ensure_ascii=False)))
        except sqlite3.OperationalError as exc:
            if "json_each" not in str(exc):
                raise
            _json_each[0] = False  # failed while preparing: nothing was inserted
    if not _json_each[0]:
        conn.executemany(_INSERT_ROWS, [(url, PENDING, now, now, now) for url in listed])
    conn.execute("UPDATE queue_counts SET n = n + ? WHERE status = ?", (len(listed), PENDING))
    return len(listed)


#: kv key of the done items' counts per outcome (JSON object), kept by
#: Queue.complete and Queue.prune in their transactions, so the State costs no scan.
OUTCOMES_KEY = "queue_outcomes"


def _outcome_counts(conn: sqlite3.Connection, scan: bool) -> dict[str, int]:
    """Done items per outcome (``ok``, ``flattr_once``, ..., ``accepted``).

    Read from kv; when it is missing or unreadable (a store from before it was
    kept) and ``scan`` is set, counted from the queue instead (inside the caller's
    write transaction, which then writes it back).
    """
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (OUTCOMES_KEY,)).fetchone()
    if row is not None:
        import json

        try:
            value = json.loads(row[0])
        except ValueError:
            value = None
        if isinstance(value, dict) and all(isinstance(k, str) and type(v) is int
                                           for k, v in value.items()):
            return value
    if not scan:
        return {}
    return {str(outcome): int(n) for outcome, n in conn.execute(
        "SELECT outcome, COUNT(*) FROM queue WHERE status = ? AND outcome IS NOT NULL "
        "GROUP BY outcome", (DONE,))}


def _write_outcome_counts(conn: sqlite3.Connection, tally: dict[str, int]) -> None:
    import json

    kept = {outcome: n for outcome, n in sorted(tally.items()) if n > 0}
    conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (OUTCOMES_KEY, json.dumps(kept)))


class Queue:
    """Queue operations on one store connection; each public method is one transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def enqueue(self, urls: Iterable[str], now: float) -> int:
        """Commit ``urls`` as pending items; returns how many. Durable on return."""
        with self._store.write() as conn:
            return insert_pending(conn, urls, now)

    def enqueue_many(self, groups: Sequence[Sequence[str]], now: float) -> Enqueued:
        """Commit every list of ``groups`` as pending items in ONE transaction.

        Returns how many items each list added, in order, and the store's
        ``data_version`` seen inside the transaction. All or nothing: when the
        transaction fails (busy, damage), none of the lists is stored. Durable on
        return (group commit of a burst of ``flattr`` requests, docs/architecture.md).
        """
        with self._store.write() as conn:
            version = self._store.data_version()
            insert_pending(conn, [url for urls in groups for url in urls], now)
        return Enqueued([len(urls) for urls in groups], version)

    def counts(self) -> dict[str, Any]:
        """Counts per status, the earliest pending due time (epoch s or None), and
        ``outcomes``: done items per outcome word (see :func:`_outcome_counts`)."""
        with self._store.read() as conn:
            counts = dict.fromkeys(STATUSES, 0)
            # Kept by triggers (store migration 2): no scan of the queue.
            counts.update(conn.execute("SELECT status, n FROM queue_counts").fetchall())
            row = conn.execute(
                "SELECT MIN(next_attempt_at) FROM queue WHERE status = ?", (PENDING,)
            ).fetchone()
            outcomes = _outcome_counts(conn, scan=False)
        return {**counts, "next_attempt_at": row[0], "outcomes": outcomes}

    def next_due(self, now: float) -> float | None:
        """When something may next be claimed: a pending item or an expiring lease."""
        row = self._store.conn.execute(
            "SELECT MIN(t) FROM ("
            " SELECT MIN(next_attempt_at) AS t FROM queue WHERE status = ?"
            " UNION ALL"
            " SELECT MIN(lease_expires_at) FROM queue WHERE status = ?)",
            (PENDING, IN_FLIGHT),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def claim(self, owner: str, now: float, lease_s: float, limit: int) -> Batch | None:
        """Lease up to ``limit`` due items to ``owner``; None if nothing is due.

        Items whose lease expired (their process died or hung) are due again.
        """
        with self._store.write() as conn:
            self._reclaim_expired(conn, now)
            rows = conn.execute(
                "SELECT id, url, attempts FROM queue WHERE status = ? AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (PENDING, now, limit),
            ).fetchall()
            if not rows:
                return None
            batch_id = new_id()
            ids = [row[0] for row in rows]
            _move(conn, ids, PENDING, IN_FLIGHT, lease_owner=owner,
                  lease_expires_at=now + lease_s, batch_id=batch_id, updated_at=now)
            marks = ",".join("?" * len(ids))
            conn.execute(
                f"UPDATE queue SET attempts = attempts + 1 WHERE id IN ({marks})", ids  # noqa: S608
            )
        attempt = max(row[2] for row in rows) + 1
        return Batch(batch_id, owner, tuple(Item(r[0], r[1]) for r in rows), attempt)

    def _reclaim_expired(self, conn: sqlite3.Connection, now: float) -> None:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM queue WHERE status = ? AND lease_expires_at <= ?", (IN_FLIGHT, now)
            )
        ]
        _move(conn, ids, IN_FLIGHT, PENDING, lease_owner=None, lease_expires_at=None,
              batch_id=None, updated_at=now, reason="lease expired")

    def renew(self, batch: Batch, now: float, lease_s: float) -> bool:
        """Extend the lease of ``batch``; False if this process no longer holds it all."""
        with self._store.write() as conn:
            changed = conn.execute(
                "UPDATE queue SET lease_expires_at = ? "
                "WHERE batch_id = ? AND lease_owner = ? AND status = ?",
                (now + lease_s, batch.id, batch.owner, IN_FLIGHT),
            ).rowcount
        return bool(changed == len(batch.items))

    def _held(self, conn: sqlite3.Connection, batch: Batch) -> list[int]:
        """Ids of ``batch`` still leased to its owner (a lost lease is not ours to settle)."""
        return [
            row[0]
            for row in conn.execute(
                "SELECT id FROM queue WHERE batch_id = ? AND lease_owner = ? AND status = ?",
                (batch.id, batch.owner, IN_FLIGHT),
            )
        ]

    def complete(self, batch: Batch, outcomes: dict[int, str], now: float) -> int:
        """Mark the held items done with their per-URL outcome; returns how many."""
        with self._store.write() as conn:
            held = self._held(conn, batch)
            tally = _outcome_counts(conn, scan=True)
            for item_id in held:
                outcome = outcomes.get(item_id, "unknown")
                _move(conn, [item_id], IN_FLIGHT, DONE, owner=batch.owner,
                      outcome=outcome, lease_owner=None,
                      lease_expires_at=None, updated_at=now, reason=None)
                tally[outcome] = tally.get(outcome, 0) + 1
            _write_outcome_counts(conn, tally)
        return len(held)

    def fail(self, batch: Batch, reason: str, now: float) -> int:
        """Mark the held items failed for good (not retried); returns how many."""
        with self._store.write() as conn:
            held = self._held(conn, batch)
            _move(conn, held, IN_FLIGHT, FAILED, owner=batch.owner, reason=reason,
                  lease_owner=None, lease_expires_at=None, updated_at=now)
        return len(held)

    def release(self, batch: Batch, next_attempt_at: float, reason: str, now: float,
                count_attempt: bool = True) -> int:
        """Return the held items to pending, due at ``next_attempt_at``.

        ``count_attempt=False`` (a pause: 401, 402, rate limit) undoes the attempt
        counter, since the server did not judge the items.
        """
        with self._store.write() as conn:
            held = self._held(conn, batch)
            _move(conn, held, IN_FLIGHT, PENDING, owner=batch.owner, reason=reason,
                  next_attempt_at=next_attempt_at, lease_owner=None, lease_expires_at=None,
                  batch_id=None, updated_at=now)
            if held and not count_attempt:
                marks = ",".join("?" * len(held))
                conn.execute(
                    f"UPDATE queue SET attempts = MAX(attempts - 1, 0) WHERE id IN ({marks})",  # noqa: S608
                    held,
                )
        return len(held)

    def reschedule_pending(self, due_at: float) -> int:
        """Make every pending item due at ``due_at`` (a resume or a flush)."""
        with self._store.write() as conn:
            return conn.execute(
                "UPDATE queue SET next_attempt_at = ? WHERE status = ? AND next_attempt_at > ?",
                (due_at, PENDING, due_at),
            ).rowcount

    def prune(
        self, now: float, done_retention_s: float, pending_expiry_s: float
    ) -> tuple[int, int]:
        """Delete done items older than retention; expire pending items too old.

        Returns (pruned done, expired pending).
        """
        with self._store.write() as conn:
            tally = _outcome_counts(conn, scan=True)
            for outcome, n in conn.execute(
                "SELECT outcome, COUNT(*) FROM queue WHERE status = ? AND updated_at < ? "
                "AND outcome IS NOT NULL GROUP BY outcome", (DONE, now - done_retention_s),
            ).fetchall():
                tally[outcome] = tally.get(outcome, 0) - n
            pruned = conn.execute(
                "DELETE FROM queue WHERE status = ? AND updated_at < ?",
                (DONE, now - done_retention_s),
            ).rowcount
            if pruned:
                _write_outcome_counts(conn, tally)
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM queue WHERE status = ? AND created_at < ?",
                    (PENDING, now - pending_expiry_s),
                )
            ]
            _move(conn, ids, PENDING, EXPIRED, updated_at=now,
                  reason=f"not delivered within {pending_expiry_s:.0f} s")
        return pruned, len(ids)

    def items(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Items for display (URLs are browsing history: only on explicit request)."""
        sql = ("SELECT id, url, status, attempts, created_at, updated_at, next_attempt_at, "
               "outcome, reason FROM queue")
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        keys = ("id", "url", "status", "attempts", "created_at", "updated_at",
                "next_attempt_at", "outcome", "reason")
        return [dict(zip(keys, row, strict=True)) for row in self._store.conn.execute(sql, params)]

    def retry_failed(self, now: float) -> int:
        """Move every failed item back to pending, due now."""
        with self._store.write() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM queue WHERE status = ?", (FAILED,))]
            _move(conn, ids, FAILED, PENDING, next_attempt_at=now, attempts=0, updated_at=now,
                  reason=None)
        return len(ids)

    def clear_failed(self) -> int:
        """Delete every failed item (the user's explicit choice)."""
        with self._store.write() as conn:
            return conn.execute("DELETE FROM queue WHERE status = ?", (FAILED,)).rowcount
