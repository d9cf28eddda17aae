"""The durable queue delivering to the fake API over real HTTPS.

Every test runs real host processes against the real fake site with zero backoff;
the fake's admin API scripts the failures and its journal shows what arrived.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest

from tests.integration.conftest import Delivery, drained

URL = "https://blog.example/post-1"
RETRYABLE = [408, 409, 500, 502, 503, 504, 525, 599]
BULK = "/rest/v2/flattr/bulk"


def flattr_and_drain(delivery: Delivery, urls: list[str], timeout: float = 20.0,
                     **env: str) -> None:
    host = delivery.start(**env)
    assert host.request("flattr", urls=urls)["result"] == {"queued": len(urls)}
    host.wait_event(drained(len(urls)), timeout=timeout)


@pytest.mark.parametrize("status", RETRYABLE)
def test_retryable_status_then_delivered_exactly_once(delivery: Delivery, status: int) -> None:
    delivery.site.script("POST", BULK, [{"status": status, "body": {"error": "x"}}])
    flattr_and_drain(delivery, [URL])
    assert delivery.sent_urls() == [URL, URL]  # the scripted failure, then one delivery
    assert delivery.rows() == [(URL, "done", "ok", None, 2)]


@pytest.mark.parametrize("fault", ["reset", "close", "hang"])
def test_connection_faults_then_delivered_exactly_once(delivery: Delivery, fault: str) -> None:
    delivery.site.script("POST", BULK, [{"fault": fault}])
    flattr_and_drain(delivery, [URL], FLATTR_REQUEST_TIMEOUT_S="1")
    assert delivery.sent_urls() == [URL, URL]
    assert delivery.rows()[0][:3] == (URL, "done", "ok")


def test_retry_after_is_honoured(delivery: Delivery) -> None:
    delivery.site.script("POST", BULK, [{"status": 503, "headers": {"Retry-After": "2"},
                                         "body": "busy"}])
    flattr_and_drain(delivery, [URL])
    first, second = delivery.bulk_requests()
    assert second["time"] - first["time"] >= 2.0
    assert delivery.sent_urls() == [URL, URL]


def test_backoff_follows_the_policy(delivery: Delivery) -> None:
    # base 0.1 s, cap 0.3 s: the ceilings are 0.1, 0.3, 0.3 s (x4 per attempt, capped)
    # and full jitter draws each wait below its ceiling. The host logs each wait it
    # chose; the journal shows no retry came earlier than that wait.
    delivery.site.script("POST", BULK, [{"status": 502}] * 3)
    flattr_and_drain(delivery, [URL], FLATTR_RETRY_BASE_S="0.1", FLATTR_RETRY_CAP_S="0.3")
    times = [e["time"] for e in delivery.bulk_requests()]
    assert len(times) == 4 and delivery.rows()[0][4] == 4
    waits = [json.loads(line)["in_s"] for line in
             (delivery.home / "logs" / "host.log").read_text().splitlines()
             if json.loads(line)["msg"] == "batch will be retried"]
    assert len(waits) == 3
    assert [w <= ceiling for w, ceiling in zip(waits, [0.1, 0.3, 0.3], strict=True)] == [True] * 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= wait - 0.01 for gap, wait in zip(gaps, waits, strict=True)), (gaps, waits)


def test_other_client_errors_fail_visibly_and_can_be_retried(delivery: Delivery) -> None:
    delivery.site.script("POST", BULK, [{"status": 400, "body": {
        "error": "invalid_request", "error_description": "nope", "error_uri": "x"}}])
    host = delivery.start()
    host.request("flattr", urls=[URL])
    event = host.wait_event(lambda s: s["queue"]["failed"] == 1)
    assert event["state"]["queue"]["pending"] == 0
    assert delivery.rows() == [(URL, "failed", None, "http 400 invalid_request", 1)]
    import subprocess

    env = {"FLATTR_HOST_HOME": str(delivery.home), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([str(delivery.launcher), "queue", "list", "--failed"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert URL in listed and "http 400 invalid_request" in listed
    subprocess.run([str(delivery.launcher), "queue", "retry-failed"], env=env, check=True,
                   capture_output=True)
    host.request("flush")
    try:
        host.wait_event(drained())
    except TimeoutError:
        print(host.events, host.mark)
        print(open(delivery.home / "logs" / "host.log").read()[-3000:])
        raise
    assert delivery.rows()[0][:3] == (URL, "done", "ok")


def test_401_erases_token_pauses_and_a_new_token_resumes(delivery: Delivery) -> None:
    host = delivery.start()
    delivery.site.revoke(delivery.token)
    host.request("flattr", urls=[URL])
    event = host.wait_event(lambda s: not s["authenticated"])
    assert event["state"]["queue"]["paused"] == "signed_out"
    assert event["state"]["queue"]["pending"] == 1
    assert delivery.rows()[0][1] == "pending"  # kept
    sent_while_signed_out = len(delivery.bulk_requests())
    assert sent_while_signed_out == 1
    # A new token (the user signs in again on flattr.com) resumes delivery.
    fresh = delivery.site.create_user(delivery.username + "-again", active=True)
    assert host.request("set-token", accessToken=fresh["token"])["result"] == {
        "authenticated": True}
    host.wait_event(drained())
    last = delivery.bulk_requests()[-1]
    assert last["headers"]["Authorization"] == f"Bearer {fresh['token']}"
    assert delivery.rows()[0][:3] == (URL, "done", "ok")


def test_402_deactivates_subscription_and_activation_resumes(delivery: Delivery) -> None:
    host = delivery.start()
    delivery.site.set_subscription(delivery.username, False)
    host.request("flattr", urls=[URL])
    event = host.wait_event(lambda s: s["queue"]["paused"] == "subscription_inactive")
    assert event["state"]["subscription"] == {"active": False}
    assert event["state"]["authenticated"] is True
    assert len(delivery.bulk_requests()) == 1
    delivery.site.set_subscription(delivery.username, True)
    host.request("set-subscription", subscription={"active": True})
    host.wait_event(drained())
    assert delivery.rows()[0][:3] == (URL, "done", "ok")
    assert len(delivery.bulk_requests()) == 2


def test_rate_limit_pauses_until_reset(delivery: Delivery) -> None:
    reset_at = int(time.time()) + 2
    delivery.site.script("POST", BULK, [{
        "status": 403, "headers": {"X-RateLimit-Reset": str(reset_at),
                                   "X-RateLimit-Remaining": "0"},
        "body": {"error": "rate_limit_exceeded", "error_description": "slow down",
                 "error_uri": "x"}}])
    host = delivery.start()
    host.request("flattr", urls=[URL])
    event = host.wait_event(lambda s: s["queue"]["paused"] == "rate_limited")
    assert event["state"]["queue"]["nextAttemptAt"] == reset_at * 1000
    host.wait_event(drained(), timeout=15)
    _first, second = delivery.bulk_requests()
    assert second["time"] >= reset_at
    assert delivery.rows()[0][:3] == (URL, "done", "ok")


def test_burst_is_gathered_into_one_request(delivery: Delivery) -> None:
    host = delivery.start(FLATTR_SUBMIT_DELAY_S="0.5")
    urls = [f"https://burst.example/{i}" for i in range(5)]
    for url in urls:
        host.request("flattr", urls=[url])
    host.wait_event(drained(5))
    requests = delivery.bulk_requests()
    assert len(requests) == 1
    assert [i["url"] for i in json.loads(requests[0]["body"])] == urls


def test_batches_respect_the_maximum(delivery: Delivery) -> None:
    urls = [f"https://many.example/{i}" for i in range(25)]
    flattr_and_drain(delivery, urls, FLATTR_BATCH_MAX="10")
    sizes = [len(json.loads(e["body"])) for e in delivery.bulk_requests()]
    assert sizes == [10, 10, 5]
    assert sorted(delivery.sent_urls()) == sorted(urls)


def test_request_shape(delivery: Delivery) -> None:
    flattr_and_drain(delivery, [URL])
    (entry,) = delivery.bulk_requests()
    assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"
    assert entry["headers"]["Content-Type"] == "application/json"
    assert json.loads(entry["body"]) == [{"url": URL}]


def test_left_over_items_are_sent_by_the_next_host_at_start(delivery: Delivery) -> None:
    host = delivery.start()
    delivery.site.set_subscription(delivery.username, False)
    host.request("flattr", urls=[URL])
    host.wait_event(lambda s: s["queue"]["paused"] == "subscription_inactive")
    host.close_stdin()
    assert host.wait() == 0
    delivery.site.set_subscription(delivery.username, True)
    second = delivery.start(sign_in=False)
    second.request("set-subscription", subscription={"active": True})
    second.wait_event(drained())
    assert delivery.rows()[0][:3] == (URL, "done", "ok")


def test_eof_finishes_the_request_in_flight(delivery: Delivery) -> None:
    delivery.site.script("POST", BULK, [{"fault": "delay", "seconds": 1.0}])
    host = delivery.start()
    host.request("flattr", urls=[URL])
    delivery.site.wait_for(1, method="POST", path=BULK)
    host.close_stdin()
    assert host.wait(15) == 0
    assert delivery.rows()[0][:3] == (URL, "done", "ok")


def test_idle_host_sleeps_until_due(delivery: Delivery) -> None:
    """No polling: a host with an item due far ahead uses ~no CPU while it waits."""
    delivery.site.script("POST", BULK, [{"status": 503, "headers": {"Retry-After": "3600"}}])
    host = delivery.start()
    host.request("flattr", urls=[URL])
    host.wait_event(lambda s: (s["queue"]["nextAttemptAt"] or 0) > time.time() * 1000 + 3e6)
    stat_path = f"/proc/{host.proc.pid}/stat"

    def cpu_ticks() -> int:
        # The launcher execs python: the pid is the host itself.
        fields = open(stat_path).read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = cpu_ticks()
    time.sleep(2.0)
    assert cpu_ticks() - before <= 2  # at most 20 ms of CPU in 2 s
    assert len(delivery.bulk_requests()) == 1
