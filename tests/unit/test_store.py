"""The SQLite store: WAL, durability settings, permissions, corruption."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flattr_host.core.errors import StoreError
from flattr_host.core.logs import Logger
from flattr_host.storage.store import MIGRATIONS, Store


def test_wal_full_sync_and_schema(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"kv", "token", "queue"} <= tables


def test_directory_and_database_are_private(tmp_path: Path, log: Logger) -> None:
    home = tmp_path / "fresh" / "home"
    with Store(home / "host.db", log):
        pass
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "host.db").stat().st_mode) == 0o600


def test_loose_directory_permissions_are_tightened(tmp_path: Path, log: Logger) -> None:
    home = tmp_path / "loose"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # noqa: S103 - the test needs a loose mode to tighten
    with Store(home / "host.db", log):
        pass
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_write_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.execute("INSERT INTO kv VALUES ('a', 'b')")
        raise RuntimeError("abort")
    assert store.get("a") is None


def test_corrupt_file_is_moved_aside_and_replaced(home: Path, log: Logger) -> None:
    (home / "host.db").write_bytes(b"this is not a database" * 100)
    with Store(home / "host.db", log) as fresh:
        assert fresh.get("anything") is None
    aside = list(home.glob("host.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert "moved aside" in (home / "logs" / "host.log").read_text()


def test_newer_schema_is_refused_with_a_clear_message(home: Path, log: Logger) -> None:
    with Store(home / "host.db", log) as first:
        first.conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99 is newer than this host's"):
        Store(home / "host.db", log)


def test_a_locked_database_is_never_moved_aside(home: Path, log: Logger) -> None:
    import sqlite3

    path = home / "host.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")  # rollback-journal file, held by "another process"
    try:
        with pytest.raises(StoreError, match="cannot open the store"):
            Store(path, log, busy_timeout_s=0.3)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not list(home.glob("host.db.corrupt-*"))
    with Store(path, log) as opened:  # and once the lock is gone it opens fine
        assert opened.conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


def test_bounded_writes_answer_busy_and_then_fail_fast(home: Path, log: Logger) -> None:
    """The loop's connection: a lock held by another process gives StoreBusy, at once
    after the first one, and writes work again as soon as the lock goes."""
    import sqlite3

    from flattr_host.core.errors import StoreBusy

    with Store(home / "host.db", log) as bounded:
        bounded.bound_writes(0.3)
        other = sqlite3.connect(home / "host.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy, match=r"write lock for more than 0\.3 s"):
            with bounded.write():
                pass  # pragma: no cover - never entered
        with pytest.raises(StoreBusy, match=r"more than 0\.1 s"):  # the shorter wait
            with bounded.write():
                pass  # pragma: no cover - never entered
        with bounded.read() as conn:  # reads see their snapshot meanwhile
            assert conn.execute("SELECT COUNT(*) FROM kv").fetchone() == (0,)
        other.execute("COMMIT")
        other.close()
        with bounded.write() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')")
        assert bounded.get("k") == "v"
        with bounded.write():  # the full wait again once a write got through
            assert bounded.conn.execute("PRAGMA busy_timeout").fetchone() == (300,)


def test_a_huge_wait_is_the_longest_sqlite_takes(home: Path, log: Logger) -> None:
    with Store(home / "host.db", log) as bounded:
        bounded.bound_writes(1e12)  # a valid setting; 10^15 ms would wrap to 0 in SQLite
        assert bounded.conn.execute("PRAGMA busy_timeout").fetchone() == (2**31 - 1,)
