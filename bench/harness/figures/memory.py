"""Memory: the host's peak RSS while delivering (read after the drain).

Read from the drain's host process once everything is delivered, before EOF:
VmHWM in /proc/PID/status (wait4's ru_maxrss is not used: see Port.peak_rss_kib).
"""

from __future__ import annotations

from harness.context import Context
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary

KEY = "memory"
TITLE = "memory (host peak RSS while delivering)"
UNIT = "MiB"
TARGET = "<= 40 MiB"
LIMIT_MIB = 40.0


def run(ctx: Context, result: FigureResult) -> None:
    """Report the peak RSS samples the drain figure recorded."""
    if "drain_rss_mib" not in ctx.shared:
        why = ctx.shared.get("drain_missing", "the drain figure did not run")
        raise NotAvailable(f"needs the drain: {why}")
    samples: list[float] = ctx.shared["drain_rss_mib"]
    if not samples:
        raise BenchError("the drain recorded no RSS samples")
    result.rows.append(Row("host, peak through the drain", Summary.of(samples), "candidate"))
    baseline = ctx.shared.get("echo_rss_mib")
    if baseline:
        result.rows.append(Row("echo host (Python)", Summary.of(baseline), "reference"))
    result.met = Summary.of(samples).median <= LIMIT_MIB
