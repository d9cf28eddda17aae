"""Idle memory: RSS of a host that has nothing to do, signed out and signed in.

The host is started for the whole browser session, once per profile, so what it
holds while idle is paid all day. Three states, each a real host process spawned
through the launcher with its own data directory, measured after ``hello`` and a
``get-state`` and a short settle (VmRSS in /proc/PID/status):

- signed out: fresh data directory, no token;
- signed in, restarted: a first host stores a token (``set-token``) and exits;
  a second host on the same directory starts with the token at rest and an empty
  queue -- the state of every browser start after sign-in (the candidate);
- signed in, just set: the same host that received ``set-token`` (sealing the
  token may load what a restarted host need not).

What is loaded is read from the live process: the shared objects mapped
(/proc/PID/maps: ``_ssl``, ``_hashlib``, ``cryptography``'s Rust core, cffi) and,
when the launcher honours PYTHONPROFILEIMPORTTIME, the imported modules of
interest from the host's stderr (an extra pass: the measured hosts run without
it). The Python echo host is the interpreter's floor.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from harness.context import Context
from harness.figures.common import queue_counts, session
from harness.model import BenchError, FigureResult, Row, Summary
from harness.port import Port
from harness.spawn import python_echo_command

KEY = "idle_memory"
TITLE = "idle memory (host RSS, empty queue)"
UNIT = "MiB"
TARGET = "signed in, empty queue <= 18 MiB"
LIMIT_MIB = 18.0
SETTLE_S = 0.3
BASE_ENV = {"FLATTR_SUBMIT_DELAY_S": "0"}
# Modules whose presence an idle host should not need (docs/performance.md).
WATCH = ("ssl", "_ssl", "http.client", "cryptography", "_cffi_backend", "hashlib",
         "urllib.request", "email", "sqlite3", "keyring", "secretstorage", "jeepney", "json",
         "asyncio", "logging")
SO_PATTERN = re.compile(r"/([^/]*?(?:_ssl|_hashlib|_rust|_cffi_backend|libssl|libcrypto|"
                        r"_sqlite3|libsqlite3|_asyncio|_json)[^/]*\.so[^/]*)$")


def rss_mib(pid: int) -> float:
    """Current resident set size (VmRSS) of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


def mapped_objects(pid: int) -> list[str]:
    """Names of the watched shared objects mapped into ``pid``."""
    found: set[str] = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        m = SO_PATTERN.search(line)
        if m:
            found.add(m.group(1))
    return sorted(found)


def imported_modules(port: Port) -> list[str] | None:
    """Watched modules the host imported (PYTHONPROFILEIMPORTTIME), None if not reported.

    Only this process's part of the stderr file: the restarted host appends to the
    file of the host that set the token (same data directory).
    """
    try:
        with port.stderr_path.open("rb") as handle:
            handle.seek(port.stderr_offset)
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    names = {line.rsplit("|", 1)[-1].strip() for line in text.splitlines()
             if line.startswith("import time:")}
    if not names:
        return None
    return sorted(n for n in names if n in WATCH)


def settled_rss(port: Port) -> float:
    """RSS after a get-state and a short settle."""
    port.request("get-state")
    time.sleep(SETTLE_S)
    return rss_mib(port.pid)


def three_states(ctx: Context, label: str, env: dict[str, str],
                 loaded: dict[str, str] | None = None) -> tuple[float, float, float]:
    """RSS (MiB) signed out, with the token just set, and restarted signed in.

    With ``loaded`` given, what each live host has loaded is recorded in it.
    """
    host, _ = ctx.host()
    with session(ctx, host, f"idlemem-out-{label}", env) as port:
        out = settled_rss(port)
        if loaded is not None:
            loaded["signed out"] = describe(port)
    home = ctx.ws.fresh(f"idlemem-in-{label}")
    with session(ctx, host, f"idlemem-set-{label}", env, home=home) as port:
        port.request("set-token", accessToken="bench-idle-token", subscription={"active": True})
        just_set = settled_rss(port)
        if loaded is not None:
            loaded["signed in, just set"] = describe(port)
    with session(ctx, host, f"idlemem-again-{label}", env, home=home) as port:
        state = port.request("get-state")
        if queue_counts(state).get("pending") not in (0, None):
            raise BenchError(f"queue not empty on restart: {queue_counts(state)!r}")
        restarted = settled_rss(port)
        if loaded is not None:
            loaded["signed in, restarted"] = describe(port)
    return out, just_set, restarted


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with idle RSS per state (see module docstring).

    The RSS rows come from hosts without PYTHONPROFILEIMPORTTIME (its report is
    not free); one extra pass with it names what is loaded.
    """
    rounds = 1 if ctx.cfg.quick else 3
    out: list[float] = []
    just_set: list[float] = []
    restarted: list[float] = []
    echo: list[float] = []
    for r in range(rounds):
        o, j, s = three_states(ctx, str(r), BASE_ENV)
        out.append(o)
        just_set.append(j)
        restarted.append(s)
        with session(ctx, python_echo_command(), f"idlemem-echo-{r}") as port:
            echo.append(settled_rss(port))
    loaded: dict[str, str] = {}
    three_states(ctx, "modules", {**BASE_ENV, "PYTHONPROFILEIMPORTTIME": "1"}, loaded)
    result.rows.append(Row("signed in, restarted", Summary.of(restarted), "candidate"))
    result.rows.append(Row("signed in, token just set", Summary.of(just_set), "reference"))
    result.rows.append(Row("signed out", Summary.of(out), "reference"))
    result.rows.append(Row("echo host (Python)", Summary.of(echo), "baseline"))
    for state_name, what in loaded.items():
        result.notes.append(f"{state_name}: {what}")
    ctx.shared["idle_memory_loaded"] = loaded
    result.ratio = Summary.of(restarted).median / Summary.of(echo).median
    result.notes.append("watched modules not listed as imported were not loaded: "
                        + ", ".join(WATCH))
    result.met = Summary.of(restarted).median <= LIMIT_MIB


def describe(port: Port) -> str:
    """What the live host has loaded, in one line."""
    mods = imported_modules(port)
    shared = mapped_objects(port.pid)
    parts = [f"mapped {', '.join(shared) or 'none of the watched objects'}"]
    if mods is None:
        parts.append("modules not reported (PYTHONPROFILEIMPORTTIME ignored)")
    else:
        parts.append(f"imported {', '.join(mods) or 'none of the watched modules'}")
    return "; ".join(parts)
