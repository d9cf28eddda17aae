"""``flattr-host logs``: read the host's rotated JSON-lines log, pretty by default.

Files come from :func:`flattr_host.core.logs.log_files` (oldest first), so records
print in the order they were written. ``-f`` then follows ``host.log``: it polls
the file, and when the file is rotated (replaced or shorter than what was read)
it finishes nothing twice and starts again at the top of the new file. Lines that
are not JSON (a torn write, a foreign line) are shown as they are, never dropped.
Everything printed comes from the log, which the logger has already redacted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from flattr_host.core.logs import LEVELS, LOG_FILE, log_files

_SKIP = ("ts", "level", "pid", "component", "msg", "trace")


def format_record(line: str, as_json: bool) -> str:
    """One printable line (or block, with a traceback) for one log line."""
    if as_json:
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    extra = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in _SKIP)
    text = (f"{record.get('ts', '?')} {str(record.get('level', '?')).upper():<7} "
            f"{record.get('component', '?')}[{record.get('pid', '?')}] "
            f"{record.get('msg', '')}" + (f"  {extra}" if extra else ""))
    trace = record.get("trace")
    if isinstance(trace, str) and trace:
        text += "\n" + "\n".join("    " + t for t in trace.rstrip().splitlines())
    return text


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if " " not in text or text.startswith(("{", "[")) else json.dumps(text)


def wanted(line: str, min_level: int) -> bool:
    """True if ``line`` is at ``min_level`` or above (unparsable lines always show)."""
    if min_level <= LEVELS["debug"]:
        return True
    try:
        record = json.loads(line)
        return LEVELS.get(str(record.get("level")), 100) >= min_level
    except (ValueError, AttributeError):
        return True


def read_lines(log_dir: Path, current_limit: int | None = None) -> Iterator[str]:
    """Every line of every log file, oldest first; ``host.log`` only up to
    ``current_limit`` bytes when given (a follower takes it from there)."""
    for path in log_files(log_dir):
        limit = current_limit if path.name == LOG_FILE else None
        try:
            with open(path, "rb") as handle:
                data = handle.read() if limit is None else handle.read(limit)
        except FileNotFoundError:  # rotated away between listing and opening
            continue
        for line in data.decode("utf-8", errors="replace").split("\n"):
            if line.strip():
                yield line


class Follower:
    """Yields lines appended to ``host.log``, surviving rotation."""

    def __init__(self, log_dir: Path) -> None:
        self._path = log_dir / LOG_FILE
        self._inode: int | None = None
        self._offset = 0
        self._partial = ""
        self.start_offset = 0
        try:
            stat = self._path.stat()
            self._inode, self._offset = stat.st_ino, stat.st_size
        except FileNotFoundError:
            pass
        self.start_offset = self._offset

    def poll(self) -> list[str]:
        """The complete lines written since the last call."""
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            # Rotated: host.log is a new file. The old one's tail was read already
            # unless it grew after our last poll; that window is one poll interval.
            self._inode, self._offset, self._partial = stat.st_ino, 0, ""
        if stat.st_size == self._offset:
            return []
        with open(self._path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")
        *lines, self._partial = text.split("\n")
        return [line for line in lines if line.strip()]


def show(lines: Iterable[str], min_level: int, as_json: bool, out: TextIO) -> None:
    for line in lines:
        if wanted(line, min_level):
            out.write(format_record(line, as_json) + "\n")
    out.flush()


def follow(follower: Follower, min_level: int, as_json: bool, out: TextIO,
           interval: float = 0.25, keep_going: Callable[[], bool] = lambda: True) -> None:
    """Print new lines until ``keep_going()`` is false (Ctrl-C for the command)."""
    while keep_going():
        show(follower.poll(), min_level, as_json, out)
        time.sleep(interval)


def main(options: Any) -> int:
    from flattr_host.core import config as config_mod

    config = config_mod.load()
    min_level = LEVELS[options.level or "debug"]
    log_dir = Path(config.log_dir)
    if not log_dir.is_dir() and not options.follow:
        sys.stderr.write(f"flattr-host: no log yet in {log_dir} (the host writes it once a "
                         "browser has started it)\n")
        return 1
    # The follower is placed first: history runs up to its offset, so no line is
    # lost or printed twice between the two.
    follower = Follower(log_dir) if options.follow else None
    limit = follower.start_offset if follower is not None else None
    lines: Iterable[str] = read_lines(log_dir, limit) if log_dir.is_dir() else ()
    if options.lines is not None:
        lines = deque((ln for ln in lines if wanted(ln, min_level)), maxlen=max(options.lines, 0))
    try:
        show(lines, min_level, options.json, sys.stdout)
        if follower is not None:
            follow(follower, min_level, options.json, sys.stdout,
                   float(os.environ.get("FLATTR_LOGS_POLL_S", "0.25")))
    except BrokenPipeError:  # `flattr-host logs | head`
        return 0
    return 0
