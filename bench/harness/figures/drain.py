"""Drain: queued URLs delivered to the fake API over real HTTPS, URLs/s (issue 6).

Per sample: the fake site (its own process, real TLS with its generated CA) gets
a fresh user with an active subscription; a host with a fresh data directory,
pointed at the fake API (FLATTR_API_BASE, FLATTR_CA_BUNDLE, no debounce, tiny
backoff so a transient failure cannot stall the sample), is sent ``drain_urls``
URLs while signed out (queued, nothing sent). The clock starts when ``set-token``
is sent and stops at the first state event with nothing pending or in flight:
token commit, lazy import of the HTTP client, TLS set-up and every batch are
inside. The fake site's journal must then hold each URL exactly once.

The host's peak RSS at the end of the sample is kept for the memory figure.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from harness.context import Context
from harness.fakesite import FakeSite, require_fake_site
from harness.figures.common import queue_counts, session, urls
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary
from harness.spawn import python_echo_command, require_host

KEY = "drain"
TITLE = "drain (queued URLs to fake API, HTTPS)"
UNIT = "URLs/s"
TARGET = ">= 5,000 URLs/s"
LIMIT = 5000.0
BULK_PATH = "/rest/v2/flattr/bulk"
ENQUEUE_CHUNK = 1000  # the protocol's maximum URLs per flattr request
DRAIN_ENV = {
    "FLATTR_SUBMIT_DELAY_S": "0",
    "FLATTR_RETRY_BASE_S": "0.01",
    "FLATTR_RETRY_CAP_S": "0.2",
}


def bulk_entries(site: FakeSite, since: int) -> list[dict[str, Any]]:
    """Journal entries of bulk submissions after sequence number ``since``."""
    answer = site.call("GET", f"/__admin/journal?method=POST&path={BULK_PATH}&since={since}")
    entries: list[dict[str, Any]] = answer["entries"]
    return entries


def delivered_urls(entries: list[dict[str, Any]]) -> list[str]:
    """Every URL in the bodies of ``entries``, in order (duplicates kept)."""
    out: list[str] = []
    for entry in entries:
        out.extend(item["url"] for item in json.loads(entry["body"]))
    return out


def is_drained(event: dict[str, Any]) -> bool:
    """A state event with nothing pending and nothing in flight."""
    queue = queue_counts(event.get("state", {}))
    return queue.get("pending") == 0 and queue.get("inFlight") == 0


def one_drain(ctx: Context, site: FakeSite, r: int) -> tuple[float, float, int]:
    """One sample: (URLs/s, peak RSS MiB, bulk requests)."""
    host, _ = ctx.host()
    user = site.call("POST", "/__admin/users", {
        "username": f"bench-{r}-{uuid.uuid4().hex[:8]}", "subscription": {"active": True},
    })
    items = urls(ctx.cfg.drain_urls, f"drain-{r}-{uuid.uuid4().hex[:6]}")
    before = bulk_entries(site, 0)
    since = max((e["seq"] for e in before), default=0)
    env = {**DRAIN_ENV, "FLATTR_API_BASE": site.api, "FLATTR_CA_BUNDLE": str(site.ca)}
    with session(ctx, host, f"drain-{r}", env) as port:
        for i in range(0, len(items), ENQUEUE_CHUNK):
            port.request("flattr", urls=items[i : i + ENQUEUE_CHUNK])
        if queue_counts(port.request("get-state")).get("pending") != len(items):
            raise BenchError(f"expected {len(items)} pending before the drain")
        port.events.clear()
        start = time.perf_counter()
        port.request("set-token", accessToken=user["token"], subscription={"active": True})
        port.wait_event(is_drained)
        elapsed = time.perf_counter() - start
        final = queue_counts(port.request("get-state"))
        rss_kib = port.peak_rss_kib()
        check_port = port
    if check_port.rusage is not None:  # wait4's ru_maxrss (KiB on Linux) once reaped
        rss_kib = max(rss_kib, int(check_port.rusage.ru_maxrss))
    if final.get("failed"):
        raise BenchError(f"{final['failed']} items failed during the drain: {final!r}")
    entries = bulk_entries(site, since)
    sent = delivered_urls(entries)
    if sorted(sent) != sorted(items):
        raise BenchError(
            f"fake API got {len(sent)} URLs ({len(set(sent))} distinct) in {len(entries)} "
            f"requests, expected each of {len(items)} once"
        )
    return len(items) / elapsed, rss_kib / 1024, len(entries)


def echo_rss_mib(ctx: Context) -> float:
    """Peak RSS of the minimal Python echo host after a hello: the interpreter's floor."""
    with session(ctx, python_echo_command(), "rss-echo") as port:
        port.request("get-state")
        peak = port.peak_rss_kib()
    return peak / 1024


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with drain throughput samples (see module docstring)."""
    try:
        require_host()
        require_fake_site()
    except NotAvailable as exc:
        ctx.shared["drain_missing"] = str(exc)
        raise
    site = ctx.site()
    site.call("POST", "/__admin/config", {"rate_limit": 1_000_000})
    rates: list[float] = []
    rss: list[float] = []
    requests: list[int] = []
    for r in range(ctx.cfg.drain_rounds):
        rate, peak, count = one_drain(ctx, site, r)
        rates.append(rate)
        rss.append(peak)
        requests.append(count)
    ctx.shared["drain_rss_mib"] = rss
    ctx.shared["echo_rss_mib"] = [echo_rss_mib(ctx)]
    result.rows.append(Row("host -> fake API", Summary.of(rates), "candidate"))
    result.notes.append(
        f"{ctx.cfg.drain_urls} URLs per sample; bulk requests per sample: {requests}; "
        "the fake API's per-client rate limit raised for the run"
    )
    result.met = Summary.of(rates).median >= LIMIT
