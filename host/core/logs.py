"""The host's log: JSON lines in a size-rotated file, warnings and errors on stderr.

Several host processes (several browser profiles) append to the same files, so a
write and the rotation check happen under an advisory lock (``fcntl.flock`` on
``logs/.lock``; on Windows writes are unlocked appends).

Secrets never reach a log: values under secret-looking keys are replaced, a
``Bearer`` credential in any string is masked, and every token the host has seen
is registered with :meth:`Logger.add_secret` and scrubbed from each line before it
is written. URLs of the queue are browsing history: callers log them only at debug.
This module avoids the ``logging`` package to keep start-up fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
LOG_FILE = "host.log"
REDACTED = "[redacted]"
_SECRET_KEYS = frozenset({"accesstoken", "access_token", "token", "authorization", "secret"})
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+")

try:  # pragma: no cover - platform dependent
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows

    def _lock(fd: int) -> None:
        pass

    def _unlock(fd: int) -> None:
        pass


#: Redaction stops descending here: no log call can exhaust the interpreter's stack.
MAX_DEPTH = 32
TOO_DEEP = f"[nested deeper than {MAX_DEPTH} levels]"

#: Bounds of :func:`preview` (a frame logged at debug): nodes, characters per string.
PREVIEW_NODES = 200
PREVIEW_CHARS = 512


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in _SECRET_KEYS


def _mask(text: str) -> str:
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact(value: Any, _depth: int = 0) -> Any:
    """Return ``value`` with secrets masked, recursively; never modifies the input.

    Containers nested deeper than :data:`MAX_DEPTH` are replaced by a marker.
    """
    if isinstance(value, dict | list | tuple) and _depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            k: (REDACTED if _is_secret_key(k) else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return _mask(value)
    return value


def preview(value: Any) -> tuple[Any, bool]:
    """A redacted copy of ``value`` cut to a bounded size, and whether it was cut.

    At most :data:`PREVIEW_NODES` values are copied (a frame of 350,000 ``{}``
    costs what 200 do), strings keep :data:`PREVIEW_CHARS` characters and say how
    many more there were, depth stops at :data:`MAX_DEPTH`. For debug lines about
    whole frames; the caller logs the frame's byte count beside it.
    """
    budget = [PREVIEW_NODES]
    cut = [False]

    def copy(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if isinstance(item, str):
            text = _mask(item)
            if len(text) > PREVIEW_CHARS:
                cut[0] = True
                return f"{text[:PREVIEW_CHARS]}...[{len(text) - PREVIEW_CHARS} more chars]"
            return text
        if not isinstance(item, dict | list | tuple):
            return item
        if depth >= MAX_DEPTH:
            cut[0] = True
            return TOO_DEEP
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        out: dict[Any, Any] | list[Any] = {} if isinstance(item, dict) else []
        for key, child in pairs:
            if budget[0] <= 0:
                cut[0] = True
                more = f"...[{len(item) - len(out)} more items]"
                if isinstance(out, dict):
                    out["..."] = more
                else:
                    out.append(more)
                break
            value_copy = REDACTED if _is_secret_key(key) else copy(child, depth + 1)
            if isinstance(out, dict):
                out[key] = value_copy
            else:
                out.append(value_copy)
        return out

    return copy(value, 0), cut[0]


class Logger:
    """Writes records as JSON lines; thread-safe enough for the host's two threads
    (each record is one ``os.write`` of a whole line under the file lock).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None,
        level: str = "info",
        max_bytes: int = 1024 * 1024,
        backups: int = 3,
        stderr: TextIO | None = None,
        component: str = "host",
    ) -> None:
        self.level = LEVELS[level]
        self._dir = None if log_dir is None else os.fspath(log_dir)
        self._max_bytes = max_bytes
        self._backups = backups
        self._stderr = stderr if stderr is not None else sys.stderr
        self._component = component
        self._secrets: set[str] = set()
        self._listeners: list[Any] = []
        self._held: list[bytes] | None = None
        if self._dir is not None:
            os.makedirs(self._dir, mode=0o700, exist_ok=True)

    @property
    def path(self) -> str | None:
        return None if self._dir is None else os.path.join(self._dir, LOG_FILE)

    def add_secret(self, secret: str) -> None:
        """Scrub ``secret`` from every later line (tokens seen by the host)."""
        if len(secret) >= 4:
            self._secrets.add(secret)

    def hold(self) -> None:
        """Keep lines in memory until :meth:`release` (start-up: reply first, log after)."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Write the held lines, in order, in one locked append."""
        held, self._held = self._held, None
        if held:
            self._append(b"".join(held))

    def add_listener(self, listener: Any) -> None:
        """Call ``listener(record)`` for each record written (the live inspector)."""
        self._listeners.append(listener)

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.level

    def debug(self, msg: str, **fields: Any) -> None:
        self.log("debug", msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self.log("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.log("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.log("error", msg, **fields)

    def exception(self, msg: str, exc: BaseException, **fields: Any) -> None:
        """Log at error with the full traceback of ``exc``."""
        import traceback

        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.log("error", msg, error=f"{type(exc).__name__}: {exc}", trace=trace, **fields)

    def log(self, level: str, msg: str, **fields: Any) -> None:
        """Write one record; never raises (a log line must not fail a request)."""
        if LEVELS[level] < self.level:
            return
        try:
            self._log(level, msg, fields)
        except Exception as exc:
            # The fields could not be written (e.g. an object whose str() raises):
            # say so, without them, rather than lose the line or the caller.
            try:
                self._log(level, msg, {"log_error": f"{type(exc).__name__}: {exc}"[:500]})
            except Exception:  # noqa: S110 - the last resort is silence, never a crash
                pass

    def _log(self, level: str, msg: str, fields: dict[str, Any]) -> None:
        now = time.time()
        record: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now % 1 * 1000):03d}Z",
            "level": level,
            "pid": os.getpid(),
            "component": self._component,
            "msg": msg,
        }
        record.update(redact(fields))
        line = self._scrub(json.dumps(record, ensure_ascii=False, default=str))
        self._write(line)
        if LEVELS[level] >= LEVELS["warning"]:
            self._echo(level, msg, record)
        for listener in list(self._listeners):
            try:
                listener(json.loads(line))
            except Exception:  # noqa: S112 - a broken listener must not break logging
                continue

    def _scrub(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        return line

    def _echo(self, level: str, msg: str, record: dict[str, Any]) -> None:
        extra = {k: v for k, v in record.items() if k not in ("ts", "level", "msg", "trace")}
        details = json.dumps(extra, default=str)
        text = self._scrub(f"flattr-host[{record['pid']}] {level.upper()}: {msg} {details}")
        try:
            self._stderr.write(text + "\n")
            self._stderr.flush()
        except (OSError, ValueError):
            pass

    def _write(self, line: str) -> None:
        if self._dir is None:
            return
        # A lone surrogate (from a JSON "\\ud800" escape) cannot be UTF-8: it is
        # written as the same escape, so the line stays valid JSON.
        data = (line + "\n").encode("utf-8", "backslashreplace")
        if self._held is not None:
            self._held.append(data)
            return
        self._append(data)

    def _append(self, data: bytes) -> None:
        assert self._dir is not None
        try:
            lock_fd = os.open(os.path.join(self._dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            _lock(lock_fd)
            path = os.path.join(self._dir, LOG_FILE)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self._max_bytes:
                self._rotate(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass  # a full disk must not take the host down; stderr still has errors
        finally:
            _unlock(lock_fd)
            os.close(lock_fd)

    def _rotate(self, path: str) -> None:
        for index in range(self._backups, 0, -1):
            older = f"{path}.{index}"
            newer = path if index == 1 else f"{path}.{index - 1}"
            if os.path.exists(newer):
                os.replace(newer, older)
        if self._backups == 0 and os.path.exists(path):
            os.unlink(path)


def log_files(log_dir: str | os.PathLike[str]) -> list[Path]:
    """The log files in ``log_dir``, oldest first."""
    from pathlib import Path

    from flattr_host.core.numbers import whole_number

    folder = Path(log_dir)
    numbered = [(number, path) for path in folder.glob(f"{LOG_FILE}.*")
                if (number := whole_number(path.suffix[1:])) is not None]
    rotated = [path for _number, path in sorted(numbered, key=lambda item: -item[0])]
    current = folder / LOG_FILE
    return rotated + ([current] if current.exists() else [])
