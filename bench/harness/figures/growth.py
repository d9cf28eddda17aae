"""Growth: how enqueue, get-state, opening and drain cost scale with the store.

Store size: one data directory is grown, signed out, through ``flattr`` requests
of 1,000 URLs (the protocol's maximum) to each size of ``growth_sizes``; at each
size a host on that store is timed for a one-URL ``flattr`` request (durable
acknowledgement), a ``get-state`` (which counts the queue), and a restart
(spawn to the reply of the first ``get-state``), with the CPU the host then
spends until it settles (the integrity check after the first reply). Drain: for each size up to
``growth_drain_max`` a fresh store of N pending URLs is delivered to the fake API
(HTTPS) and reported as ms per 1,000 URLs; the same store, now holding N done
items, is timed again for one-URL ``flattr`` and ``get-state``. Processes: 1, 2,
4, 8 host processes on one data directory, each sending ``growth_proc_urls``
one-URL requests at once (threads, one per port); the per-request latency is the
row, the aggregate URLs/s a note. Each timed op is the median of several.

Target (none was set for growth; this one is ours): flat, i.e. each per-request cost
at the largest store within 2x of the smallest, and aggregate enqueue with more
processes not below one process's. Reported, not asserted.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from harness.context import Context
from harness.figures.common import queue_counts, session, spawn, urls
from harness.figures.drain import DRAIN_ENV, is_drained
from harness.model import BenchError, FigureResult, Row, Summary
from harness.port import Port
from harness.spawn import HELLO_EXTENSION

KEY = "growth"
TITLE = "growth (cost vs store size and processes)"
UNIT = "ms"
TARGET = "flat: each cost at the largest store <= 2x the smallest; N procs >= 1 proc aggregate"
CHUNK = 1000
OPS = 15  # timed repetitions per op and size


def fmt_size(n: int) -> str:
    """10^k for powers of ten, else the number."""
    k = len(str(n)) - 1
    return f"10^{k}" if n == 10**k else f"{n:,}"


def time_ops(port: Port, label: str, ops: int) -> tuple[list[float], list[float]]:
    """(flattr 1-URL ms, get-state ms) samples, interleaved."""
    enq: list[float] = []
    state: list[float] = []
    for i in range(ops):
        start = time.perf_counter()
        port.request("flattr", urls=[f"https://example.com/{label}/op-{i}-{uuid.uuid4().hex[:6]}"])
        enq.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        port.request("get-state")
        state.append((time.perf_counter() - start) * 1000)
    return enq, state


def settled_cpu_ms(port: Port, timeout_s: float) -> float:
    """Host CPU ms from spawn until it stops using CPU (unchanged over 0.5 s).

    Catches the work a host does after its first reply on a store of this size
    (the one integrity check, docs/performance.md), which no reply waits for.
    """
    deadline = time.monotonic() + timeout_s
    last, still = port.cpu_seconds(), 0
    while still < 5:
        if time.monotonic() > deadline:
            raise BenchError(f"host still busy {timeout_s:.0f} s after start")
        time.sleep(0.1)
        now = port.cpu_seconds()
        still = still + 1 if now == last else 0
        last = now
    return last * 1000


def fill(port: Port, count: int, label: str) -> float:
    """Enqueue ``count`` URLs in 1,000-URL requests; URLs/s."""
    items = urls(count, label)
    start = time.perf_counter()
    for i in range(0, count, CHUNK):
        port.request("flattr", urls=items[i : i + CHUNK])
    return count / max(time.perf_counter() - start, 1e-9)


def store_size_rows(ctx: Context, result: FigureResult) -> dict[str, dict[int, float]]:
    """Rows for the pending-store sizes; medians per op and size."""
    host, _ = ctx.host()
    home = ctx.ws.fresh("growth-store")
    medians: dict[str, dict[int, float]] = {
        "flattr": {}, "get-state": {}, "restart": {}, "start-up CPU": {}}
    have = 0
    fill_rates: list[str] = []
    for size in ctx.cfg.growth_sizes:
        tag = uuid.uuid4().hex[:6]
        with session(ctx, host, f"growth-fill-{size}", home=home) as port:
            if size > have:
                rate = fill(port, size - have, f"g{size}-{tag}")
                fill_rates.append(f"{fmt_size(have)}->{fmt_size(size)}: {rate:,.0f} URLs/s")
            pending = queue_counts(port.request("get-state")).get("pending")
            enq, state = time_ops(port, f"g{size}-{tag}", OPS)
        have = int(pending) + OPS if isinstance(pending, int) else size + OPS
        restarts: list[float] = []
        settle: list[float] = []
        for r in range(3):
            port = spawn(ctx, host, f"growth-open-{size}-{r}", home=home)
            try:
                port.request("hello", extension=HELLO_EXTENSION)
                port.request("get-state")
                restarts.append((time.perf_counter() - port.spawned_at) * 1000)
                settle.append(settled_cpu_ms(port, ctx.cfg.timeout_s))
            finally:
                port.close()
        name = fmt_size(size)
        for op, samples in (("flattr", enq), ("get-state", state), ("restart", restarts),
                            ("start-up CPU", settle)):
            label = {"flattr": "flattr 1 URL", "get-state": "get-state",
                     "restart": "spawn->get-state",
                     "start-up CPU": "CPU ms until settled after start"}[op]
            role = "candidate" if (op == "flattr" and not result.rows) else "reference"
            result.rows.append(Row(f"{label} @ {name} pending", Summary.of(samples), role))
            medians[op][size] = statistics.median(samples)
        if pending != size:
            result.notes.append(f"store at {name}: host reports pending={pending!r}")
    result.notes.append("fill (1,000-URL requests): " + "; ".join(fill_rates))
    return medians


def drain_rows(ctx: Context, result: FigureResult) -> dict[int, float]:
    """Rows for draining N pending URLs, and ops on the N done items left."""
    host, _ = ctx.host()
    site = ctx.site()
    site.call("POST", "/__admin/config", {"rate_limit": 1_000_000})
    per_k: dict[int, float] = {}
    for size in [s for s in ctx.cfg.growth_sizes if s <= ctx.cfg.growth_drain_max]:
        user = site.call("POST", "/__admin/users", {
            "username": f"growth-{size}-{uuid.uuid4().hex[:8]}", "subscription": {"active": True},
        })
        env = {**DRAIN_ENV, "FLATTR_API_BASE": site.api, "FLATTR_CA_BUNDLE": str(site.ca)}
        with session(ctx, host, f"growth-drain-{size}", env) as port:
            fill(port, size, f"gd{size}-{uuid.uuid4().hex[:6]}")
            port.events.clear()
            start = time.perf_counter()
            port.request("set-token", accessToken=user["token"], subscription={"active": True})
            port.wait_event(is_drained, timeout_s=max(ctx.cfg.timeout_s, size / 200))
            ms_per_k = (time.perf_counter() - start) * 1000 / (size / 1000)
            final = queue_counts(port.request("get-state"))
            if final.get("failed"):
                raise BenchError(f"{final['failed']} items failed in the growth drain: {final!r}")
            enq, state = time_ops(port, f"gdone{size}", OPS)
        name = fmt_size(size)
        result.rows.append(Row(f"drain, per 1,000 URLs @ {name}", Summary.of([ms_per_k]),
                               "reference"))
        result.rows.append(Row(f"flattr 1 URL @ {name} done", Summary.of(enq), "reference",
                               "signed in: includes nothing of the delivery"))
        result.rows.append(Row(f"get-state @ {name} done", Summary.of(state), "reference"))
        per_k[size] = ms_per_k
    return per_k


def enqueue_ones(port: Port, count: int, prefix: str, out: list[float],
                 errors: list[BaseException]) -> None:
    """Send ``count`` one-URL flattr requests, appending each latency (ms) to ``out``."""
    try:
        for n in range(count):
            t0 = time.perf_counter()
            port.request("flattr", urls=[f"https://example.com/{prefix}/{n}"])
            out.append((time.perf_counter() - t0) * 1000)
    except BaseException as exc:  # the caller reports it after the join
        errors.append(exc)


def proc_rows(ctx: Context, result: FigureResult) -> dict[int, float]:
    """Rows for P host processes enqueueing at once on one store; aggregate URLs/s."""
    host, _ = ctx.host()
    aggregate: dict[int, float] = {}
    for procs in ctx.cfg.growth_procs:
        home = ctx.ws.fresh(f"growth-procs-{procs}")
        ports = [spawn(ctx, host, f"growth-p{procs}-{i}", home=home) for i in range(procs)]
        latencies: list[list[float]] = [[] for _ in ports]
        errors: list[BaseException] = []
        try:
            for port in ports:
                port.request("hello", extension=HELLO_EXTENSION)

            threads = [
                threading.Thread(target=enqueue_ones, args=(
                    p, ctx.cfg.growth_proc_urls, f"p{procs}/{i}", latencies[i], errors))
                for i, p in enumerate(ports)
            ]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            if errors:
                raise BenchError(f"{procs} processes on one store: {errors[0]}")
            pending = queue_counts(ports[0].request("get-state")).get("pending")
        finally:
            for port in ports:
                port.close()
        total = procs * ctx.cfg.growth_proc_urls
        if pending != total:
            raise BenchError(f"{procs} processes enqueued {total} URLs, store holds {pending!r}")
        flat = [x for per in latencies for x in per]
        result.rows.append(Row(f"flattr 1 URL, {procs} proc(s) on one store", Summary.of(flat),
                               "reference"))
        aggregate[procs] = total / elapsed
    result.notes.append("aggregate enqueue, URLs/s: " + "; ".join(
        f"{p} proc(s) {rate:,.0f}" for p, rate in aggregate.items()))
    return aggregate


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` (see module docstring)."""
    medians = store_size_rows(ctx, result)
    per_k = drain_rows(ctx, result)
    aggregate = proc_rows(ctx, result)
    ratios: dict[str, float] = {}
    for op, by_size in medians.items():
        lo, hi = min(by_size), max(by_size)
        ratios[f"{op} {fmt_size(hi)}/{fmt_size(lo)}"] = by_size[hi] / by_size[lo]
    if len(per_k) > 1:
        ratios[f"drain {fmt_size(max(per_k))}/{fmt_size(min(per_k))}"] = (
            per_k[max(per_k)] / per_k[min(per_k)])
    result.notes.append("cost ratios, largest/smallest: " + "; ".join(
        f"{k} {v:.2f}x" for k, v in ratios.items()))
    one = aggregate.get(1)
    scale_ok = one is None or all(rate >= one * 0.9 for rate in aggregate.values())
    result.ratio = max(ratios.values()) if ratios else None
    result.met = all(v <= 2.0 for v in ratios.values()) and scale_ok
