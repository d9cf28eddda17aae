"""What a live host process has loaded, and when its submitter has settled.

A host started with ``PYTHONPROFILEIMPORTTIME=1`` and its stderr in a file
(``HostProcess(stderr=...)``) reports every import as it happens; the shared
objects it maps are in ``/proc/PID/maps``. "Settled": the submitter finished its
start-up and went to sleep (its debug line ``submitter sleeping`` in the host's
log, from this process; the host needs ``FLATTR_LOG_LEVEL=debug``).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flattr_testing.host import HostProcess


def imported(host: HostProcess) -> set[str]:
    """Every module the host imported so far (its PYTHONPROFILEIMPORTTIME report)."""
    return {line.rsplit("|", 1)[1].strip() for line in host.stderr_text().splitlines()
            if line.startswith("import time:") and "cumulative" not in line}


def mapped(host: HostProcess, pattern: re.Pattern[str]) -> set[str]:
    """The first group of every ``pattern`` match in the host's memory map now."""
    maps = Path(f"/proc/{host.proc.pid}/maps").read_text()
    return {m.group(1) for m in pattern.finditer(maps)}


def log_lines(home: Path, pid: int) -> list[dict[str, Any]]:
    """The log lines process ``pid`` wrote in ``home``'s host log."""
    path = home / "logs" / "host.log"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("pid") == pid]


def settled(home: Path, host: HostProcess, timeout: float = 30.0) -> None:
    """Wait until this host's submitter went to sleep after its start-up."""
    deadline = time.monotonic() + timeout
    while not any(line["msg"] == "submitter sleeping" for line in log_lines(home, host.proc.pid)):
        assert time.monotonic() < deadline, "the submitter never went to sleep"
        time.sleep(0.05)


def loaded_after(code: str, watched: Sequence[str],
                 env: Mapping[str, str] | None = None) -> list[str]:
    """Which of ``watched`` a fresh interpreter has imported once it ran ``code``."""
    probe = (f"{code}\nimport sys as _sys\n"
             f"print(sorted(m for m in {tuple(watched)!r} if m in _sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, env=None if env is None else dict(env))
    found: list[str] = ast.literal_eval(done.stdout.strip())
    return found
