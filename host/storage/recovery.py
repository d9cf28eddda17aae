"""A damaged store found while hosts run on it: keep it aside, salvage, start over.

Called with the error that showed the damage (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``)
or when the start-up ``PRAGMA integrity_check`` fails (docs/architecture.md,
"Damaged store"). What happens is what happens to a damaged file at start-up:

1. ``PRAGMA integrity_check`` confirms the damage (an error that the check does not
   confirm changes nothing). One process at a time (a lock file beside the store);
   a second process that finds the store already replaced stops here.
2. A byte-for-byte copy of the damaged database (the WAL folded in) is kept as
   ``host.db.corrupt-<time>``.
3. From the copy, what can be read is salvaged: the URLs of pending and in-flight
   flattrs (the rows on readable pages) and the attention settings (opted-in sites,
   "count every site"). Tokens, counters and history are not.
4. The live file is overwritten, in place, with a fresh store holding the salvage
   and a ``problem`` note (:mod:`flattr_host.core.health`): signed out, the queue is
   what was salvaged. In place (SQLite's backup API) so that every connection of
   every host process sees the new store at its next transaction, with no file
   renamed under it. A file SQLite cannot open as a database at all is moved aside
   instead, and this process's stores open the new file.
"""

from __future__ import annotations

import os
import sqlite3
import time

from flattr_host.core import health
from flattr_host.storage.store import MIGRATIONS, is_corruption, split_statements

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from flattr_host.core.logs import Logger
    from flattr_host.storage.store import Store

#: Rows probed one by one past a damaged page when the table scan stops there.
PROBE_LIMIT = 200_000
#: Lines of the integrity check kept in the log.
CHECK_LINES = 5

try:  # pragma: no cover - platform dependent
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

except ImportError:  # pragma: no cover - Windows: one host per data directory is usual

    def _lock(fd: int) -> None:
        pass


def integrity_problems(conn: sqlite3.Connection, quick: bool = False) -> list[str]:
    """The findings of ``PRAGMA integrity_check`` (``quick_check`` if ``quick``); []
    for a sound store.

    ``quick_check`` reads every page as the full check does but skips matching each
    index to its table: about 40% less CPU (0.85 against 1.35 s at 10^6 queued
    items, docs/performance.md, growth), which is what a start-up can afford. A
    check that cannot even run because the file is damaged reports that error.
    """
    pragma = "PRAGMA quick_check(20)" if quick else "PRAGMA integrity_check(20)"
    try:
        rows = [str(r[0]) for r in conn.execute(pragma).fetchall()]
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        return [f"{type(exc).__name__}: {exc}"]
    return [] if rows == ["ok"] else rows


class Salvage:
    """What was read from a damaged store."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.sites: list[tuple[str, float]] = []
        self.count_all: str | None = None
        self.unreadable_rows = False

    def describe(self) -> dict[str, Any]:
        return {"pending": len(self.urls), "sites": len(self.sites),
                "countAll": self.count_all is not None,
                "complete": not self.unreadable_rows}


def _usable_url(url: object) -> bool:
    from flattr_host.protocol.urls import check_url

    try:
        check_url(url, "url")
    except Exception:
        return False
    return True


def _queue_rows(conn: sqlite3.Connection, salvage: Salvage) -> Iterator[tuple[Any, ...]]:
    """Rows of the queue table: a scan, then point lookups past a damaged page."""
    last = 0
    try:
        for row in conn.execute("SELECT id, url, status FROM queue NOT INDEXED ORDER BY rowid"):
            last = int(row[0])
            yield row
        return
    except sqlite3.DatabaseError:
        salvage.unreadable_rows = True
    try:
        top = int(conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue'")
                  .fetchone()[0])
    except (sqlite3.DatabaseError, TypeError, ValueError):
        top = last + PROBE_LIMIT
    for rowid in range(last + 1, min(top, last + PROBE_LIMIT) + 1):
        try:
            row = conn.execute("SELECT id, url, status FROM queue NOT INDEXED WHERE rowid = ?",
                               (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            yield row


def salvage_from(path: str) -> Salvage:
    """Read what can be read from the damaged copy at ``path`` (never raises)."""
    salvage = Salvage()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        salvage.unreadable_rows = True
        return salvage
    try:
        try:
            for _id, url, status in _queue_rows(conn, salvage):
                if status in ("pending", "in_flight") and _usable_url(url):
                    salvage.urls.append(url)
        except sqlite3.DatabaseError:
            salvage.unreadable_rows = True
        try:
            salvage.sites = [(str(s), float(t)) for s, t in
                             conn.execute("SELECT site, enabled_at FROM attention_site")]
        except (sqlite3.DatabaseError, TypeError, ValueError):
            salvage.unreadable_rows = True
        try:
            row = conn.execute("SELECT value FROM kv WHERE key = 'attention_count_all'") \
                .fetchone()
            salvage.count_all = None if row is None else str(row[0])
        except sqlite3.DatabaseError:
            salvage.unreadable_rows = True
    finally:
        conn.close()
    return salvage


def _fresh_image(page_size: int, salvage: Salvage, note: dict[str, Any]) -> sqlite3.Connection:
    """A new store in memory: the schema, the salvage and the note."""
    image = sqlite3.connect(":memory:", isolation_level=None)
    image.execute(f"PRAGMA page_size = {int(page_size)}")
    image.execute("BEGIN")
    for script in MIGRATIONS:
        for statement in split_statements(script):
            image.execute(statement)
    image.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    _fill(image, salvage, note)
    image.execute("COMMIT")
    return image


def _aside_path(path: str) -> str:
    aside = f"{path}.corrupt-{int(time.time())}"
    index = 1
    while os.path.exists(aside):
        aside = f"{path}.corrupt-{int(time.time())}-{index}"
        index += 1
    return aside


def _note(aside: str, salvage: Salvage) -> dict[str, Any]:
    found = salvage.describe()
    return health.make(
        "store_replaced",
        f"the store was damaged and has been replaced; sign in again. "
        f"{found['pending']} pending flattrs were saved"
        + ("" if found["complete"] else " (some rows could not be read)")
        + f"; the damaged file is kept as {os.path.basename(aside)}",
        kept=aside, salvaged=found,
    )


def recover(store: Store, log: Logger, error: BaseException | None) -> dict[str, Any] | None:
    """Replace ``store``'s damaged file; returns the problem note, None if it was sound.

    ``error`` is what showed the damage (None: the start-up check). Never leaves a
    half-made store: a failure raises with the damaged file still in place.
    """
    lock_fd = os.open(f"{store.path}.recover-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock(lock_fd)
        if store.moved():
            store.reopen()  # another process replaced it meanwhile
            log.warning("store was replaced by another host process; reopened",
                        error=None if error is None else str(error))
            return None
        probe = sqlite3.connect(store.path, timeout=store.busy_timeout_s, isolation_level=None)
        try:
            problems = integrity_problems(probe)
            if not problems:
                if error is not None:
                    log.warning("store error, but the integrity check passes; store kept",
                                error=f"{type(error).__name__}: {error}")
                return None
            return _replace(store, log, error, probe, problems)
        finally:
            probe.close()
    finally:
        os.close(lock_fd)


def _replace(store: Store, log: Logger, error: BaseException | None,
             probe: sqlite3.Connection, problems: list[str]) -> dict[str, Any]:
    aside = _aside_path(store.path)
    in_place = True
    salvage = Salvage()
    try:
        page_size = int(probe.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.DatabaseError:
        in_place = False
    if in_place:
        # Another connection holds the write lock while the copy is made and
        # salvaged, so no host commits to the damaged file meanwhile; only the
        # moment between releasing it and the reset taking it remains.
        guard = sqlite3.connect(store.path, timeout=store.busy_timeout_s,
                                isolation_level=None)
        try:
            try:
                guard.execute("BEGIN IMMEDIATE")  # a lock held too long fails the recovery
                copy = sqlite3.connect(aside)
                try:
                    probe.backup(copy)
                    copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                finally:
                    copy.close()
                os.chmod(aside, 0o600)
                salvage = salvage_from(aside)  # still under the write lock
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                in_place = False
                for suffix in ("", "-wal", "-shm", "-journal"):
                    if os.path.exists(aside + suffix):
                        os.unlink(aside + suffix)
        finally:
            if guard.in_transaction:
                guard.execute("ROLLBACK")
            guard.close()
    if in_place:
        note = _note(aside, salvage)
        image = _fresh_image(page_size, salvage, note)
        try:
            image.backup(probe)
        finally:
            image.close()
    else:
        store.quarantine_to(aside)
        salvage = salvage_from(aside)
        note = _note(aside, salvage)
        store.reopen()
        with store.write() as conn:
            _fill(conn, salvage, note)
    log.error("store was damaged; kept aside and replaced by a fresh one (signed out)",
              kept=aside, salvaged=salvage.describe(), in_place=in_place,
              error=None if error is None else f"{type(error).__name__}: {error}",
              check=problems[:CHECK_LINES])
    return note


def _fill(conn: sqlite3.Connection, salvage: Salvage, note: dict[str, Any]) -> None:
    from flattr_host.storage.queue import insert_pending

    if salvage.urls:
        insert_pending(conn, salvage.urls, time.time())
    conn.executemany("INSERT OR IGNORE INTO attention_site (site, enabled_at) VALUES (?, ?)",
                     salvage.sites)
    if salvage.count_all is not None:
        conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('attention_count_all', ?)",
                     (salvage.count_all,))
    health.write_store_problem(conn, note)


def check_at_start(store: Store, log: Logger) -> dict[str, Any] | None:
    """Run the quick integrity check once (after the first reply); recover when the
    full check confirms damage."""
    if not integrity_problems(store.conn, quick=True):
        return None
    return recover(store, log, None)
