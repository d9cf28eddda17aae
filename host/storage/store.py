"""The host's SQLite store: one database file in the data directory.

WAL mode with ``synchronous=FULL``: a commit is on disk when it returns, and readers
never block the writer. Several host processes (one per browser profile or port)
open the same file; every write runs in ``BEGIN IMMEDIATE`` so concurrent
read-modify-write sequences serialize instead of losing updates, and a busy
timeout makes writers wait for each other rather than fail.

A file that is not a usable database is moved aside (``host.db.corrupt-<time>``)
and a fresh one is created: a broken store means signed out, never a crash. Damage
found later, while hosts run on the file, is handled the same way by
:mod:`flattr_host.storage.recovery`; a store whose path names another file than the one it
has open (moved aside by another connection) reopens it at its next transaction.
"""

from __future__ import annotations

# The C module itself: the sqlite3 package on top of it adds only the date and time
# adapters (unused here, deprecated since Python 3.12), and importing them loads
# datetime, about 1 ms of the host's start-up (docs/performance.md, cold start).
# The classes are the same objects as sqlite3's.
import _sqlite3 as sqlite3
import os
import time

from flattr_host.core.errors import StoreBusy, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

    from flattr_host.core.logs import Logger

BUSY_TIMEOUT_MS = 30_000
#: After one StoreBusy on a bounded connection, later writes wait at most this long
#: until one succeeds (Store.bound_writes).
BUSY_AGAIN_S = 0.1

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
    # Counts per status kept in the same transaction as every change, so the state
    # (sent after every request) costs one small read, not a scan. Updates and
    # deletes are counted by triggers; inserts happen only in Queue.enqueue, which
    # adds its count once per request (a per-row insert trigger cost 30% of the
    # enqueue throughput, docs/performance.md).
    """
    CREATE TABLE queue_counts (
        status TEXT PRIMARY KEY,
        n INTEGER NOT NULL
    );
    INSERT INTO queue_counts (status, n)
        SELECT s, (SELECT COUNT(*) FROM queue WHERE status = s)
        FROM (SELECT 'pending' AS s UNION ALL SELECT 'in_flight' UNION ALL SELECT 'done'
              UNION ALL SELECT 'failed' UNION ALL SELECT 'expired');
    CREATE TRIGGER queue_count_delete AFTER DELETE ON queue BEGIN
        UPDATE queue_counts SET n = n - 1 WHERE status = OLD.status;
    END;
    CREATE TRIGGER queue_count_update AFTER UPDATE OF status ON queue
        WHEN OLD.status != NEW.status BEGIN
        UPDATE queue_counts SET n = n - 1 WHERE status = OLD.status;
        UPDATE queue_counts SET n = n + 1 WHERE status = NEW.status;
    END;
    """,
    # Attention counters (docs/attention.md#storage). One row per normalized
    # URL; the columns are PageCounter.to_record()'s keys plus updated_at (epoch s,
    # for pruning). Sites the user opted in. "Count every site" and the clear
    # generation live in kv ('attention_count_all', 'attention_generation').
    """
    CREATE TABLE attention_page (
        url TEXT PRIMARY KEY,
        attention_s REAL NOT NULL CHECK (attention_s >= 0),
        audio_s REAL NOT NULL CHECK (audio_s >= 0),
        is_audio INTEGER NOT NULL CHECK (is_audio IN (0, 1)),
        next_index INTEGER NOT NULL CHECK (next_index >= 0),
        updated_at REAL NOT NULL
    );
    CREATE INDEX attention_page_updated ON attention_page (updated_at);
    CREATE TABLE attention_site (
        site TEXT PRIMARY KEY,
        enabled_at REAL NOT NULL
    );
    """,
)


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (trigger bodies hold ``;`` too).

    ``executescript`` would commit the migration's transaction half-way.
    """
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise StoreError(f"incomplete SQL statement in a migration: {current.strip()[:60]!r}")
    return statements


def ensure_dir(path: str) -> None:
    """Create ``path`` (and parents) with mode 0700, and tighten it if it exists."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.name == "posix" and (os.stat(path).st_mode & 0o777) != 0o700:
        os.chmod(path, 0o700)


class _Transaction:
    """``with store.write()`` / ``with store.read()``: commit on success, roll back on error."""

    __slots__ = ("_begin", "_bounded", "_conn")

    def __init__(self, conn: sqlite3.Connection, begin: str | None,
                 bounded: Store | None = None) -> None:
        self._conn = conn
        self._begin = begin  # None: joins the transaction already open
        self._bounded = bounded

    def __enter__(self) -> sqlite3.Connection:
        if self._begin is None:
            return self._conn
        if self._bounded is None:
            self._conn.execute(self._begin)
        else:
            self._bounded._begin_bounded(self._begin)
        return self._conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._begin is None or not self._conn.in_transaction:
            # Joined (the outer block ends it), or ended inside the block (committed
            # early, or rolled back by SQLite).
            return
        self._conn.execute("ROLLBACK" if kind is not None and self._begin != "BEGIN" else "COMMIT")


#: SQLite result codes that mean the file is not a usable database.
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


SQLITE_BUSY = 5


def is_busy(exc: sqlite3.Error) -> bool:
    """True when another connection holds a lock this one waited for in vain."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == SQLITE_BUSY


def is_corruption(exc: sqlite3.Error) -> bool:
    """True only for "malformed" and "not a database", never for locks or I/O."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def is_corruption_error(exc: BaseException) -> bool:
    """:func:`is_corruption` for any exception (False for anything but SQLite's)."""
    return isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc)


class Store:
    """An open connection to the host database; use as a context manager or close()."""

    def __init__(self, path: str | os.PathLike[str], log: Logger,
                 busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
        self.path = os.fspath(path)
        self._log = log
        self._busy_timeout_s = busy_timeout_s
        self._write_wait_s: float | None = None  # set by bound_writes()
        self._wait_now_s = busy_timeout_s
        self._was_busy = False
        self._inode: tuple[int, int] | None = None
        self._version_cursor: sqlite3.Cursor | None = None
        ensure_dir(os.path.dirname(os.path.abspath(self.path)))
        try:
            self.conn = self._open_retrying()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise StoreError(f"{self.path}: cannot open the store ({exc})") from exc
            self._quarantine(exc)
            self.conn = self._open_retrying()
        self._inode = self._path_inode()

    @property
    def busy_timeout_s(self) -> float:
        return self._busy_timeout_s

    def _path_inode(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def moved(self) -> bool:
        """True when the path no longer names the file this store has open.

        Only a damaged file is ever moved away (:mod:`flattr_host.storage.recovery`).
        """
        return os.name == "posix" and self._path_inode() != self._inode

    def reopen(self) -> None:
        """Open the file now at the path (a fresh one if none); the old one is closed.

        SQLite does not checkpoint or delete the WAL of a file that was moved
        (``SQLITE_FCNTL_HAS_MOVED``), so closing the old connection cannot touch
        the new file's WAL.
        """
        old = self.conn
        self.conn = self._open_retrying()
        self._inode = self._path_inode()
        try:
            old.close()
        except sqlite3.Error:
            pass

    def _follow(self) -> None:
        """Reopen if another connection moved a damaged file away from the path."""
        if self._inode is not None and not self.conn.in_transaction and self.moved():
            self._log.warning("the store file was replaced; reopening", path=self.path)
            self.reopen()

    def _open_retrying(self) -> sqlite3.Connection:
        """Open, retrying while another process holds a lock SQLite will not wait for.

        Switching a new file to WAL needs an exclusive lock and returns SQLITE_BUSY
        at once, without the busy handler, when another host opens it at the same
        moment; "locked" is never a reason to treat the file as corrupt.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.005
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                if is_corruption(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _open(self) -> sqlite3.Connection:
        # Create a new file 0600 ourselves (sqlite3 would use the umask; SQLite gives
        # the -wal and -shm files the database file's mode). Never open and close
        # an existing database file here: closing any descriptor of a file drops
        # every POSIX lock this process holds on it, including the locks of other
        # SQLite connections in this process, and readers then see stale data.
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":  # persistent: only the first open of a new file switches
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
                for statement in split_statements(MIGRATIONS[index]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _quarantine(self, exc: Exception) -> None:
        aside = f"{self.path}.corrupt-{int(time.time())}"
        self._log.error("store is not a usable database; moved aside", path=aside,
                        error=str(exc))
        self.quarantine_to(aside)

    def quarantine_to(self, aside: str) -> None:
        """Move the database file and its WAL and shared-memory files to ``aside``."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)

    def write(self) -> _Transaction:
        """A write transaction (BEGIN IMMEDIATE); commits on success, rolls back on error.

        After :meth:`bound_writes`, raises :class:`StoreBusy` when the write lock is
        not had in time (nothing changed).
        """
        self._follow()
        return _Transaction(self.conn, "BEGIN IMMEDIATE",
                            None if self._write_wait_s is None else self)

    def bound_writes(self, wait_s: float) -> None:
        """Let a write wait at most ``wait_s`` for another process's lock, then raise.

        For the message loop's connection: the extension gives up on a request after
        5 to 15 s (docs/protocol.md#errors, ``busy``). Once a write was refused, the
        next ones wait at most :data:`BUSY_AGAIN_S` until one succeeds, so requests
        queued behind a lock held for long are all answered promptly, not one wait
        each.
        """
        self._write_wait_s = wait_s
        self._set_wait(wait_s)

    def _set_wait(self, seconds: float) -> None:
        if seconds != self._wait_now_s:
            # SQLite takes a C int of milliseconds: larger values wrap to "no wait".
            ms = min(int(seconds * 1000), 2**31 - 1)
            self.conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._wait_now_s = seconds

    def _begin_bounded(self, begin: str) -> None:
        assert self._write_wait_s is not None
        wait = min(self._write_wait_s, BUSY_AGAIN_S) if self._was_busy else self._write_wait_s
        self._set_wait(wait)
        try:
            self.conn.execute(begin)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            self._was_busy = True
            raise StoreBusy(
                f"{self.path}: another process held the write lock for more than {wait:g} s"
            ) from None
        self._was_busy = False

    def read(self) -> _Transaction:
        """A read transaction: a consistent snapshot of several queries. Inside a
        transaction already open on this connection it joins that one (the outer
        block ends it), so readers compose into one snapshot."""
        if self.conn.in_transaction:
            return _Transaction(self.conn, None)
        self._follow()
        return _Transaction(self.conn, "BEGIN")

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on this connection: it changes when another
        connection (thread or process) has committed since this one last looked.

        Asked on every ``get-state``; a kept cursor makes it one statement step (the
        two ``fcntl`` calls of the read lock are its floor, docs/performance.md).
        """
        conn = self.conn
        cursor = self._version_cursor
        if cursor is None or cursor.connection is not conn:
            cursor = self._version_cursor = conn.cursor()
        row = cursor.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
