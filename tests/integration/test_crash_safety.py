"""Nothing acknowledged is lost: SIGKILL at random moments, and several hosts on one store.
Real host processes, real fake API over HTTPS, zero backoff.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter

import pytest

from flattr_testing.host import HostProcess
from tests.integration.conftest import Delivery, drained

BULK = "/rest/v2/flattr/bulk"
KILLS = 50


def in_flight_urls(delivery: Delivery) -> list[str]:
    conn = sqlite3.connect(delivery.home / "host.db")
    try:
        return [r[0] for r in conn.execute("SELECT url FROM queue WHERE status = 'in_flight'")]
    finally:
        conn.close()


def delivered_urls(delivery: Delivery, scripted_failures: int = 0) -> Counter[str]:
    """URLs in bulk requests that the fake API answered itself (not a scripted step)."""
    counts: Counter[str] = Counter()
    for entry in delivery.bulk_requests()[scripted_failures:]:
        counts.update(item["url"] for item in json.loads(entry["body"]))
    return counts


@pytest.mark.parametrize("style", ["documented", "unknown_json"])
def test_sigkill_at_random_moments_loses_nothing(delivery: Delivery, style: str) -> None:
    """With the documented answer, and with a 2xx body the host cannot read."""
    delivery.site.configure(bulk_answer=style)
    rng = random.Random(20261122)
    # Every request takes a little while, so that kills often land while one is in flight.
    delivery.site.script("POST", BULK, [{"fault": "delay", "seconds": 0.03}] * 2000)
    acknowledged: list[str] = []
    in_flight_at_kills: Counter[str] = Counter()
    signed_in = False
    for kill in range(KILLS):
        host = HostProcess(delivery.launcher, delivery.home,
                           env=delivery.env(FLATTR_LEASE_S="0.3", FLATTR_BATCH_MAX="7"))
        delivery.hosts.append(host)
        if not signed_in:
            host.request("set-token", accessToken=delivery.token, subscription={"active": True})
            signed_in = True
        deadline = time.monotonic() + rng.uniform(0.0, 0.25)
        index = 0
        try:
            while time.monotonic() < deadline:
                urls = [f"https://crash.example/{kill}/{index + i}" for i in range(3)]
                index += 3
                host.send({"id": index, "type": "flattr", "urls": urls})
                while True:  # the acknowledgement (events may come first)
                    message = host.recv(5)
                    if message.get("id") == index:
                        break
                if message.get("ok"):
                    acknowledged += urls
        finally:
            host.proc.send_signal(signal.SIGKILL)
            host.wait(10)
        in_flight_at_kills.update(in_flight_urls(delivery))
    # A last, well-behaved host delivers whatever is left (expired leases included).
    final = HostProcess(delivery.launcher, delivery.home, env=delivery.env(FLATTR_LEASE_S="0.3"))
    delivery.hosts.append(final)
    final.request("flush")
    final.wait_event(drained(len(acknowledged)), timeout=60)
    sent = delivered_urls(delivery)
    missing = [url for url in acknowledged if sent[url] == 0]
    duplicates = {url: n - 1 for url, n in sent.items() if n > 1}
    print(f"\n[{style}] kills: {KILLS}, requests: {len(delivery.bulk_requests())}, "
          f"acknowledged URLs: {len(acknowledged)}, delivered: {len(sent)}, "
          f"duplicate sends: {sum(duplicates.values())} of URLs in flight at a kill: "
          f"{sum(in_flight_at_kills.values())}")
    assert len(acknowledged) > 100
    assert missing == []
    for url, extra in duplicates.items():
        # A URL can only be sent twice if a kill caught its request in flight.
        assert extra <= in_flight_at_kills[url], url
    rows = sqlite3.connect(delivery.home / "host.db").execute(
        "SELECT status, COUNT(*) FROM queue GROUP BY status").fetchall()
    assert dict(rows) == {"done": len(acknowledged)}
    outcomes = {r[0] for r in sqlite3.connect(delivery.home / "host.db").execute(
        "SELECT DISTINCT outcome FROM queue")}
    # A resent URL is "flattr_once" the second time in the documented answer.
    assert outcomes <= ({"ok", "flattr_once"} if style == "documented" else {"accepted"})


def test_two_hosts_draining_one_store_send_no_url_twice(delivery: Delivery) -> None:
    urls = [f"https://two.example/{i}" for i in range(300)]
    # Slow answers and small batches make the two hosts' requests overlap.
    delivery.site.script("POST", BULK, [{"fault": "delay", "seconds": 0.02}] * 200)
    first = delivery.start(sign_in=True, FLATTR_BATCH_MAX="10")
    first.request("set-subscription", subscription={"active": False})  # hold delivery
    second = delivery.start(sign_in=False, FLATTR_BATCH_MAX="10")
    for start in range(0, len(urls), 50):
        first.request("flattr", urls=urls[start : start + 50])
    errors: list[BaseException] = []

    def resume(host: HostProcess) -> None:
        try:
            host.request("set-subscription", subscription={"active": True})
            host.request("flush")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=resume, args=(h,)) for h in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    # 300 URLs in batches of 10: at least 30 requests. Then both hosts finish what
    # they have in flight and exit on EOF, and the store and the journal are final.
    delivery.site.wait_for(30, method="POST", path=BULK, timeout=60)
    for host in (first, second):
        host.close_stdin()
    assert [host.wait(30) for host in (first, second)] == [0, 0]
    assert dict(sqlite3.connect(delivery.home / "host.db").execute(
        "SELECT status, COUNT(*) FROM queue GROUP BY status").fetchall()) == {"done": 300}
    sent = delivered_urls(delivery)
    assert sorted(sent) == sorted(urls)
    assert max(sent.values()) == 1, [u for u, n in sent.items() if n > 1]
    pids = set()
    for path in (delivery.home / "logs").glob("host.log*"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["msg"] == "batch delivered":
                pids.add(record["pid"])
    assert len(pids) == 2, f"both hosts should have delivered batches: {pids}"
