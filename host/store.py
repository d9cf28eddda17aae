"""The host's SQLite store: one database file in the data directory.

WAL mode with ``synchronous=FULL``: a commit is on disk when it returns, and readers
never block the writer. Several host processes (one per browser profile or port)
open the same file; every write runs in ``BEGIN IMMEDIATE`` so concurrent
read-modify-write sequences serialize instead of losing updates, and a busy
timeout makes writers wait for each other rather than fail.

A file that is not a usable database is moved aside (``host.db.corrupt-<time>``)
and a fresh one is created: a broken store means signed out, never a crash.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flattr_host.errors import StoreError
from flattr_host.logs import Logger

BUSY_TIMEOUT_MS = 30_000

# Each entry migrates from version i to i + 1; PRAGMA user_version records the result.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE token (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        key_id TEXT NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        url TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'in_flight', 'done', 'failed', 'expired')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at REAL,
        batch_id TEXT,
        outcome TEXT,
        reason TEXT
    );
    CREATE INDEX queue_by_status ON queue (status, next_attempt_at);
    """,
)


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700, and tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix" and (path.stat().st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)


class Store:
    """An open connection to the host database; use as a context manager or close()."""

    def __init__(self, path: Path, log: Logger) -> None:
        self.path = path
        self._log = log
        ensure_dir(path.parent)
        try:
            self.conn = self._open()
        except sqlite3.DatabaseError as exc:
            self._quarantine(exc)
            self.conn = self._open()

    def _open(self) -> sqlite3.Connection:
        # Create the file 0600 ourselves: sqlite3 would use the process umask.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == len(MIGRATIONS):
            return
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this host's "
                f"{len(MIGRATIONS)}; upgrade flattr-host"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for index in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _quarantine(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        self._log.error("store is not a usable database; moved aside", path=str(aside),
                        error=str(exc))
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                os.replace(source, Path(str(aside) + suffix))

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commits on success, rolls back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: a consistent snapshot of several queries."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
