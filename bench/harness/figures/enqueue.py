"""Durable enqueue: URLs/s through ``flattr`` requests vs raw SQLite.

The host is started signed out (no token, so nothing is delivered and the queue
only grows) with a fresh data directory per sample, greeted, then sent
``enqueue_urls`` URLs in ``flattr`` requests of ``batch`` URLs each, one request
at a time: the protocol acknowledges a request only once its URLs are committed
(docs/protocol.md), so the clock stops at the last acknowledgement. The baseline
(bench/baselines/sqlite_insert.py, same interpreter, same filesystem) commits one
transaction per request-equivalent at WAL + synchronous=FULL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from harness.context import Context
from harness.figures.common import interleaved, queue_counts, session, urls
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary
from harness.port import encode
from harness.spawn import BASELINES

KEY = "enqueue"
TITLE = "durable enqueue (flattr requests)"
UNIT = "URLs/s"
TARGET = ">= 0.5x raw SQLite inserts (WAL, synchronous=FULL)"
LIMIT = 0.5


def host_rate(ctx: Context, batch: int, label: str) -> tuple[float, str]:
    """URLs/s for the host, and a note when its queue counts do not add up."""
    host, _ = ctx.host()
    items = urls(ctx.cfg.enqueue_urls, label)
    with session(ctx, host, f"enqueue-{batch}") as port:
        first = 10_000
        frames = [
            encode({"id": first + n, "type": "flattr", "urls": items[i : i + batch]})
            for n, i in enumerate(range(0, len(items), batch))
        ]
        start = time.perf_counter()
        for n, frame in enumerate(frames):
            port.send_raw(frame)
            reply = port.reply_to(first + n)
            if reply.get("ok") is not True:
                error = reply.get("error") or {}
                if n == 0 and error.get("code") == "unknown_type":
                    raise NotAvailable("host does not know the flattr request yet")
                raise BenchError(f"flattr request {n} failed: {error!r}")
        elapsed = time.perf_counter() - start
        pending = queue_counts(port.request("get-state")).get("pending")
    note = ""
    if pending != len(items):
        note = (
            f"host reports queue.pending={pending!r} after {len(items)} URLs: "
            "the durable queue has not landed, figure is provisional"
        )
    return len(items) / elapsed, note


def sqlite_rate(ctx: Context, batch: int, label: str) -> float:
    """URLs/s for raw SQLite inserts, committed every ``batch`` rows."""
    db = ctx.ws.fresh(f"sqlite-{batch}") / "queue.sqlite3"
    done = subprocess.run(
        [sys.executable, str(BASELINES / "sqlite_insert.py"), "--db", str(db),
         "--count", str(ctx.cfg.enqueue_urls), "--batch", str(batch), "--prefix", label],
        capture_output=True, text=True, timeout=ctx.cfg.timeout_s * 10,
    )
    if done.returncode != 0:
        raise BenchError(f"sqlite_insert.py failed: {done.stderr.strip()[-300:]}")
    measured = json.loads(done.stdout)
    return float(measured["rows"]) / float(measured["seconds"])


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with host and SQLite URLs/s per batch size, interleaved."""
    missing: NotAvailable | None = None
    try:
        ctx.host()
    except NotAvailable as exc:
        missing = exc
    ratios: list[float] = []
    for batch in ctx.cfg.enqueue_batches:
        kinds = ["sqlite"] if missing is not None else ["host", "sqlite"]
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        notes: set[str] = set()
        for r, kind in interleaved(kinds, ctx.cfg.enqueue_rounds):
            label = f"b{batch}-r{r}"
            if kind == "host":
                if missing is not None:
                    continue
                try:
                    rate, note = host_rate(ctx, batch, label)
                except NotAvailable as exc:
                    missing = exc
                    continue
                samples[kind].append(rate)
                if note:
                    notes.add(note)
            else:
                samples[kind].append(sqlite_rate(ctx, batch, label))
        if samples.get("host"):
            result.rows.append(
                Row(f"host, {batch} URL(s)/request", Summary.of(samples["host"]), "candidate")
            )
        result.rows.append(
            Row(f"raw SQLite, {batch} row(s)/commit", Summary.of(samples["sqlite"]), "baseline")
        )
        result.notes.extend(sorted(notes))
        if samples.get("host"):
            ratio = Summary.of(samples["host"]).median / Summary.of(samples["sqlite"]).median
            ratios.append(ratio)
            result.notes.append(f"batch {batch}: host/SQLite = {ratio:.2f}x")
    result.notes.append(f"{ctx.cfg.enqueue_urls} URLs per sample")
    if missing is not None:
        raise missing
    result.ratio = min(ratios)
    result.met = all(ratio >= LIMIT for ratio in ratios)
