"""Idle: host CPU time over an idle window with a pending item far ahead.

The host gets a token and one URL; its API base is a closed loopback port, so the
first delivery attempt fails at once (connection refused) and, with the backoff
base and cap at one hour (FLATTR_RETRY_BASE_S / FLATTR_RETRY_CAP_S), the item is
rescheduled up to an hour ahead. Once ``get-state`` shows the next attempt beyond
the window, the clock starts: the host's user+system CPU time (/proc/PID/stat)
and its context switches (all threads, /proc/PID/task/*/status) are read before
and after ``idle_seconds`` of silence. The Python echo host idles alongside, as a
reference for "a process that does nothing". A host that sleeps until its next
due time uses ~0 CPU and ~0 wake-ups; one that polls shows both.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.context import Context
from harness.figures.common import queue_counts, session
from harness.model import BenchError, FigureResult, Row, Summary
from harness.port import Port
from harness.spawn import python_echo_command

KEY = "idle"
TITLE = "idle (host CPU over idle window)"
UNIT = "CPU ms"
TARGET = "~0 (no polling): <= 20 ms CPU and <= 2 wake-ups per 10 s"
IDLE_ENV = {
    "FLATTR_RETRY_BASE_S": "3600",
    "FLATTR_RETRY_CAP_S": "3600",
    "FLATTR_SUBMIT_DELAY_S": "0",
}
URL = "https://example.com/bench/idle"


def switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid``."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except FileNotFoundError:  # thread ended meanwhile
            continue
        for line in text.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def wait_scheduled_far(port: Port, beyond_s: float, timeout_s: float) -> float:
    """Poll get-state (before the window) until the pending item is due beyond ``beyond_s``.

    Returns how far ahead (s) the next attempt is.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queue = queue_counts(port.request("get-state"))
        next_ms = queue.get("nextAttemptAt")
        if queue.get("pending") == 1 and isinstance(next_ms, int | float):
            ahead = next_ms / 1000 - time.time()
            if ahead > beyond_s:
                return ahead
        time.sleep(0.05)
    raise BenchError(f"pending item not scheduled beyond {beyond_s:.0f} s: last queue {queue!r}")


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with the host's (and the echo host's) CPU ms per idle window."""
    host, _ = ctx.host()
    window = ctx.cfg.idle_seconds
    host_cpu: list[float] = []
    echo_cpu: list[float] = []
    wakeups: list[int] = []
    for r in range(ctx.cfg.idle_rounds):
        with session(ctx, host, f"idle-{r}", IDLE_ENV) as port, \
                session(ctx, python_echo_command(), f"idle-echo-{r}") as echo:
            port.request("set-token", accessToken="bench-idle-token",
                         subscription={"active": True})
            port.request("flattr", urls=[URL])
            ahead = wait_scheduled_far(port, window + 30, ctx.cfg.timeout_s)
            time.sleep(0.2)  # let the failed attempt's bookkeeping (log, commit) finish
            cpu0, echo0, sw0 = port.cpu_seconds(), echo.cpu_seconds(), switches(port.pid)
            time.sleep(window)
            cpu1, echo1, sw1 = port.cpu_seconds(), echo.cpu_seconds(), switches(port.pid)
            host_cpu.append((cpu1 - cpu0) * 1000)
            echo_cpu.append((echo1 - echo0) * 1000)
            wakeups.append(sw1 - sw0)
            if queue_counts(port.request("get-state")).get("pending") != 1:
                raise BenchError("the pending item did not stay pending through the window")
        result.notes.append(f"round {r}: next attempt {ahead:.0f} s ahead")
    result.rows.append(Row("host", Summary.of(host_cpu), "candidate"))
    result.rows.append(Row("echo host (Python)", Summary.of(echo_cpu), "reference"))
    result.notes.append(
        f"window {window:g} s; host context switches per window: {wakeups} "
        f"(CPU time resolution 10 ms)"
    )
    limit_ms = max(20.0, 0.002 * window * 1000)
    result.met = Summary.of(host_cpu).median <= limit_ms and max(wakeups) <= max(2, window / 5)
