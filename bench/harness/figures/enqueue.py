"""Durable enqueue: URLs/s through ``flattr`` requests vs raw SQLite.

The host is started signed out (no token, so nothing is delivered and the queue
only grows) with a fresh data directory per sample, greeted, then sent
``enqueue_urls`` URLs in ``flattr`` requests of ``batch`` URLs each, in two series:

- **sequential**: one request at a time, each sent after the previous reply. The
  protocol acknowledges a request only once its URLs are committed
  (docs/protocol.md), so every request is its own commit: a sequential client
  cannot be grouped. Reported beside the target, not judged by it.
- **burst**: :data:`WINDOW` requests outstanding at once (many tabs, or the
  attention timer), a new one written for each reply read. The host commits the
  requests it finds waiting in one transaction (group commit, docs/architecture.md)
  and answers each after that commit. The target applies to this series.

Either way the clock stops at the last reply, and ``get-state`` must then show
every URL pending. The baseline (bench/baselines/sqlite_insert.py, same
interpreter, same filesystem) commits one transaction per request-equivalent at
WAL + synchronous=FULL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from harness.context import Context
from harness.figures.common import interleaved, queue_counts, session, urls
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary
from harness.port import Port, encode
from harness.spawn import BASELINES

KEY = "enqueue"
TITLE = "durable enqueue (flattr requests)"
UNIT = "URLs/s"
TARGET = ">= 0.8x raw SQLite inserts (WAL, synchronous=FULL), burst series"
LIMIT = 0.8
#: Requests outstanding at once in the burst series.
WINDOW = 100
FIRST_ID = 10_000


def _check(reply: dict[str, object], n: int) -> None:
    if reply.get("ok") is not True:
        error = reply.get("error") or {}
        if n == 0 and isinstance(error, dict) and error.get("code") == "unknown_type":
            raise NotAvailable("host does not know the flattr request yet")
        raise BenchError(f"flattr request {n} failed: {error!r}")


def _sequential(port: Port, frames: list[bytes]) -> None:
    for n, frame in enumerate(frames):
        port.send_raw(frame)
        _check(port.reply_to(FIRST_ID + n), n)


def _burst(port: Port, frames: list[bytes]) -> None:
    """:data:`WINDOW` requests outstanding; for the replies read together, as many new
    requests are written together (replies come in request order)."""
    sent = min(WINDOW, len(frames))
    port.send_raw(b"".join(frames[:sent]))
    n = 0
    while n < len(frames):
        _check(port.reply_to(FIRST_ID + n), n)
        n += 1
        answered = 1
        while n < sent and port.has_frame():
            _check(port.reply_to(FIRST_ID + n), n)
            n += 1
            answered += 1
        if sent < len(frames):
            more = frames[sent : sent + answered]
            sent += len(more)
            port.send_raw(b"".join(more))


def host_rate(ctx: Context, batch: int, label: str, burst: bool) -> tuple[float, str]:
    """URLs/s for the host, and a note when its queue counts do not add up."""
    host, _ = ctx.host()
    items = urls(ctx.cfg.enqueue_urls, label)
    kind = "burst" if burst else "seq"
    with session(ctx, host, f"enqueue-{kind}-{batch}") as port:
        frames = [
            encode({"id": FIRST_ID + n, "type": "flattr", "urls": items[i : i + batch]})
            for n, i in enumerate(range(0, len(items), batch))
        ]
        start = time.perf_counter()
        (_burst if burst else _sequential)(port, frames)
        elapsed = time.perf_counter() - start
        pending = queue_counts(port.request("get-state")).get("pending")
    note = ""
    if pending != len(items):
        note = (
            f"host reports queue.pending={pending!r} after {len(items)} URLs ({kind}): "
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
    """Fill ``result`` with host (sequential and burst) and SQLite URLs/s per batch
    size, interleaved; the verdict is the burst series' against SQLite."""
    missing: NotAvailable | None = None
    try:
        ctx.host()
    except NotAvailable as exc:
        missing = exc
    ratios: list[float] = []
    for batch in ctx.cfg.enqueue_batches:
        kinds = ["sqlite"] if missing is not None else ["burst", "sequential", "sqlite"]
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        notes: set[str] = set()
        for r, kind in interleaved(kinds, ctx.cfg.enqueue_rounds):
            label = f"b{batch}-r{r}-{kind}"
            if kind == "sqlite":
                samples[kind].append(sqlite_rate(ctx, batch, label))
                continue
            if missing is not None:
                continue
            try:
                rate, note = host_rate(ctx, batch, label, burst=kind == "burst")
            except NotAvailable as exc:
                missing = exc
                continue
            samples[kind].append(rate)
            if note:
                notes.add(note)
        base = Summary.of(samples["sqlite"])
        if samples.get("burst"):
            result.rows.append(Row(f"host burst, {batch} URL(s)/request",
                                   Summary.of(samples["burst"]), "candidate"))
        if samples.get("sequential"):
            result.rows.append(Row(f"host sequential, {batch} URL(s)/req",
                                   Summary.of(samples["sequential"]), "reference"))
        result.rows.append(Row(f"raw SQLite, {batch} row(s)/commit", base, "baseline"))
        result.notes.extend(sorted(notes))
        if samples.get("burst") and samples.get("sequential"):
            ratio = Summary.of(samples["burst"]).median / base.median
            sequential = Summary.of(samples["sequential"]).median / base.median
            ratios.append(ratio)
            result.notes.append(f"batch {batch}: host/SQLite = {ratio:.2f}x burst (target "
                                f"{LIMIT}x), {sequential:.2f}x sequential (not grouped)")
    result.notes.append(f"{ctx.cfg.enqueue_urls} URLs per sample; burst: {WINDOW} requests "
                        "outstanding, a new one written per reply read")
    if missing is not None:
        raise missing
    result.ratio = min(ratios)
    result.met = all(ratio >= LIMIT for ratio in ratios)
