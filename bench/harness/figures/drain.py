"""Drain: queued URLs delivered to the fake API over real HTTPS, URLs/s.

Per sample: the fake site (its own process, real TLS with its generated CA, state
in memory unless ``--fake-site-persistent``: the server's storage is not what is
measured, and with SQLite state it serves only ~2,000 URLs/s itself) gets
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

import http.client
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

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
DIRECT_BATCH = 500  # the fake API's maximum items per bulk request (docs/fake-site.md)
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
        # VmHWM of the live host, not wait4's ru_maxrss: Linux carries the peak of
        # the pre-exec image (a fork of this harness) into ru_maxrss, which made
        # the figure track the harness's own size.
        rss_kib = port.peak_rss_kib()
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


def one_direct(ctx: Context, site: FakeSite, r: int) -> float:
    """Reference: the harness itself posts the same URLs to the fake API (URLs/s).

    One keep-alive HTTPS connection, batches of the API's maximum, sequential:
    what the fake API serves with no host in between, so the host's share of the
    drain time can be told from the server's.
    """
    user = site.call("POST", "/__admin/users", {
        "username": f"bench-direct-{r}-{uuid.uuid4().hex[:8]}", "subscription": {"active": True},
    })
    items = urls(ctx.cfg.drain_urls, f"direct-{r}-{uuid.uuid4().hex[:6]}")
    api = urlsplit(site.api)
    conn = http.client.HTTPSConnection(api.hostname or "127.0.0.1", api.port,
                                       context=site.ssl_context(), timeout=ctx.cfg.timeout_s)
    headers = {"Authorization": f"Bearer {user['token']}", "Content-Type": "application/json"}
    try:
        start = time.perf_counter()
        for i in range(0, len(items), DIRECT_BATCH):
            body = json.dumps([{"url": u} for u in items[i : i + DIRECT_BATCH]])
            conn.request("POST", BULK_PATH, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise BenchError(f"direct bulk POST -> {response.status}: {payload[:200]!r}")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return len(items) / elapsed


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
    direct: list[float] = []
    rss: list[float] = []
    requests: list[int] = []
    for r in range(ctx.cfg.drain_rounds):  # host and reference alternate, order rotating
        order = ["host", "direct"] if r % 2 == 0 else ["direct", "host"]
        for kind in order:
            if kind == "direct":
                direct.append(one_direct(ctx, site, r))
                continue
            rate, peak, count = one_drain(ctx, site, r)
            rates.append(rate)
            rss.append(peak)
            requests.append(count)
    ctx.shared["drain_rss_mib"] = rss
    ctx.shared["echo_rss_mib"] = [echo_rss_mib(ctx)]
    result.rows.append(Row("host -> fake API", Summary.of(rates), "candidate"))
    result.rows.append(Row("fake API alone (harness client)", Summary.of(direct), "reference"))
    result.notes.append(
        f"{ctx.cfg.drain_urls} URLs per sample; bulk requests per sample: {requests}; "
        "the fake API's per-client rate limit raised for the run; fake site state "
        + ("in SQLite (--fake-site-persistent)" if ctx.cfg.fake_site_persistent else "in memory")
    )
    result.met = Summary.of(rates).median >= LIMIT
