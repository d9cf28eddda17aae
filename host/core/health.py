"""What is wrong with this host right now: the state's ``problem`` (docs/protocol.md#state).

Two kinds of problem, one shape ``{code, message, since}`` (``since`` in ms since
the epoch):

- a note in the store (``kv`` key ``problem``), shared by every host process on the
  data directory: the store was found damaged and replaced (``store_replaced``,
  written by :mod:`flattr_host.storage.recovery`); it goes when the user signs in again;
- a thread of this process that stopped (``delivery_stopped``,
  ``attention_stopped``, ``inspector_stopped``), kept in :data:`PROCESS` until the
  thread runs again. It is also written to ``<home>/health/<pid>.json`` so that
  ``flattr-host status`` and ``doctor`` (other processes) show it; the file goes
  when the problem does and at exit.

A process problem comes first in the state: it says what this host is not doing.
"""

from __future__ import annotations

import json
import os
import time
from _thread import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from typing import Any

STORE_KEY = "problem"
HEALTH_DIR = "health"

#: Components in the order their problem is shown (the first one found wins).
COMPONENTS = ("submitter", "attention", "inspector")


def make(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """A problem object: ``code``, a human ``message``, ``since`` (ms) and ``extra``."""
    return {"code": code, "message": message, "since": int(time.time() * 1000), **extra}


def read_store_problem(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The store's note, or None (an unreadable note is reported as unreadable)."""
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (STORE_KEY,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        return {"code": "unknown", "message": "an unreadable problem note is in the store",
                "since": None}
    return value


def write_store_problem(conn: sqlite3.Connection, problem: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (STORE_KEY, json.dumps(problem)),
    )


def clear_store_problem(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM kv WHERE key = ?", (STORE_KEY,))


class Health:
    """The problems of this process's threads; thread-safe."""

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._problems: dict[str, dict[str, Any]] = {}
        self._current: dict[str, Any] | None = None
        self._folder: str | None = None
        self._listeners: list[Callable[[dict[str, Any] | None], None]] = []

    def attach(self, home: str | os.PathLike[str]) -> None:
        """Mirror problems to ``<home>/health/<pid>.json`` (the running host)."""
        self._folder = os.path.join(os.fspath(home), HEALTH_DIR)

    def add_listener(self, listener: Callable[[dict[str, Any] | None], None]) -> None:
        """Call ``listener(current())`` whenever the current problem changes."""
        self._listeners.append(listener)

    def report(self, component: str, code: str, message: str) -> None:
        """``component``'s thread stopped (or keeps failing) because of ``message``."""
        with self._lock:
            old = self._problems.get(component)
            if old is not None and old["code"] == code and old["message"] == message:
                return
            self._problems[component] = make(code, message, component=component)
        self._changed()

    def resolve(self, component: str) -> None:
        """``component`` runs again."""
        with self._lock:
            if self._problems.pop(component, None) is None:
                return
        self._changed()

    def current(self) -> dict[str, Any] | None:
        """The problem to show: the same object until the problems change."""
        return self._current

    def problems(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._problems.values())

    def reset(self) -> None:
        """Forget every problem and listener (tests; a host's exit)."""
        with self._lock:
            self._problems.clear()
            self._current = None
            self._listeners = []
        self._write_file([])
        self._folder = None

    def _changed(self) -> None:
        with self._lock:
            ordered = sorted(self._problems.items(),
                             key=lambda kv: COMPONENTS.index(kv[0])
                             if kv[0] in COMPONENTS else len(COMPONENTS))
            self._current = ordered[0][1] if ordered else None
            current = self._current
            problems = [p for _c, p in ordered]
        self._write_file(problems)
        for listener in list(self._listeners):
            try:
                listener(current)
            except Exception:  # noqa: S112 - a listener must not break the reporter
                continue

    def _write_file(self, problems: list[dict[str, Any]]) -> None:
        if self._folder is None:
            return
        path = os.path.join(self._folder, f"{os.getpid()}.json")
        try:
            if not problems:
                if os.path.exists(path):
                    os.unlink(path)
                return
            os.makedirs(self._folder, mode=0o700, exist_ok=True)
            tmp = f"{path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "problems": problems}, handle)
            os.replace(tmp, path)
        except OSError:
            pass  # a full disk: the state still says it; the file is a convenience


#: The problems of this process.
PROCESS = Health()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def running_problems(home: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Problems reported by host processes still alive on ``home`` (status, doctor)."""
    folder = os.path.join(os.fspath(home), HEALTH_DIR)
    found: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return found
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                data = json.load(handle)
            pid = int(data["pid"])
            problems = list(data["problems"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            found += [{**p, "pid": pid} for p in problems if isinstance(p, dict)]
    return found
