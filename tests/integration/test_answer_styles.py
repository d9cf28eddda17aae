"""The real service's answers are unknown: delivery is right for every plausible one.

Real host processes against the fake API over HTTPS. The fake answers each success
in one of its styles (admin ``config bulk_answer``) or a script gives the status,
headers and body; the journal shows what arrived.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import pytest

from fake_flattr.api.bulk import STYLES
from tests.integration.conftest import Delivery, drained

BULK = "/rest/v2/flattr/bulk"
N = 12


def deliver(delivery: Delivery, urls: list[str], **env: str) -> dict[str, object]:
    host = delivery.start(FLATTR_BATCH_MAX="5", **env)
    assert host.request("flattr", urls=urls)["result"] == {"queued": len(urls)}
    final = host.wait_event(drained(len(urls)), timeout=30)["state"]["queue"]
    assert (final["pending"], final["inFlight"], final["failed"]) == (0, 0, 0)
    # A host started later on the same store sees the same settled queue.
    later = delivery.start(sign_in=False).request("get-state")["result"]["queue"]
    assert (later["pending"], later["inFlight"], later["done"]) == (0, 0, len(urls))
    return dict(later)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_answer_style_delivers_each_url_exactly_once(delivery: Delivery,
                                                           style: str) -> None:
    delivery.site.configure(bulk_answer=style)
    urls = [f"https://styles.example/{style}/{i}" for i in range(N)]
    queue = deliver(delivery, urls)
    assert Counter(delivery.sent_urls()) == Counter(urls)  # once each, nothing more
    assert len(delivery.bulk_requests()) == 3  # 5 + 5 + 2
    rows = delivery.rows()
    assert [r[:2] for r in rows] == [(url, "done") for url in urls]
    expected = "ok" if style == "documented" else "accepted"
    assert {r[2] for r in rows} == {expected}
    assert queue["outcomes"] == {expected: N}
    log = (delivery.home / "logs" / "host.log").read_text().splitlines()
    not_understood = [json.loads(line) for line in log
                      if json.loads(line)["msg"].startswith("bulk answer body not understood")]
    assert len(not_understood) == (0 if style == "documented" else 3)
    assert all(record["level"] == "debug" for record in not_understood)


SCRIPTED_SUCCESSES: list[tuple[int, object, dict[str, str]]] = [
    (200, "", {}),
    (200, {}, {}),
    (200, [], {}),
    (200, "OK", {"Content-Type": "text/plain"}),
    (200, {"message": "ok", "flattred": 1}, {}),
    (200, [{"url": "https://blog.example/post-1", "status": "ok"}], {}),
    (200, "<html><body>Internal error</body></html>", {"Content-Type": "text/html"}),
    (200, '{"results": [{"url": ', {}),
    (200, {"results": "all good"}, {}),
    (200, {"error": "looks like an error, but the status is 200"}, {}),
    (201, {"id": 7}, {}),
    (202, "", {}),
    (204, "", {}),
]


@pytest.mark.parametrize(("status", "body", "headers"), SCRIPTED_SUCCESSES,
                         ids=lambda value: repr(value)[:30])
def test_scripted_successes_are_final(delivery: Delivery, status: int, body: object,
                                      headers: dict[str, str]) -> None:
    url = "https://blog.example/post-1"
    delivery.site.script("POST", BULK, [{"status": status, "body": body, "headers": headers}])
    deliver(delivery, [url])
    assert delivery.sent_urls() == [url]
    assert delivery.rows() == [(url, "done", "accepted", None, 1)]
    assert all(h.proc.poll() is None for h in delivery.hosts)


def test_redirect_is_not_followed_and_the_batch_is_sent_again(delivery: Delivery) -> None:
    elsewhere = socket.socket()
    elsewhere.bind(("127.0.0.1", 0))
    elsewhere.listen(8)
    elsewhere.setblocking(False)
    port = elsewhere.getsockname()[1]
    url = "https://blog.example/post-1"
    try:
        delivery.site.script("POST", BULK, [
            {"status": 307, "headers": {"Location": f"https://127.0.0.1:{port}{BULK}"}},
            {"status": 302, "headers": {"Location": f"https://127.0.0.1:{port}/"},
             "body": "moved"},
        ])
        deliver(delivery, [url])
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # nobody ever connected: the token stayed home
    finally:
        elsewhere.close()
    assert delivery.sent_urls() == [url, url, url]
    assert delivery.rows() == [(url, "done", "ok", None, 3)]


@pytest.mark.parametrize(("status", "body", "headers"), [
    (429, "", {"Retry-After": "2"}),
    (429, "Too Many Requests", {"X-RateLimit-Reset": "in a while"}),  # garbled: Retry-After absent
    (403, "<html>slow down</html>", {"X-RateLimit-Remaining": "0", "Retry-After": "2"}),
    (403, {"error": "rate_limit_exceeded"}, {"X-RateLimit-Reset": "2"}),  # seconds, not epoch
])
def test_rate_limits_of_other_shapes_pause_then_deliver(
        delivery: Delivery, status: int, body: object, headers: dict[str, str]) -> None:
    url = "https://blog.example/post-1"
    delivery.site.script("POST", BULK, [{"status": status, "body": body, "headers": headers}])
    host = delivery.start()
    sent_at = time.time()
    host.request("flattr", urls=[url])
    paused = host.wait_event(lambda s: s["queue"]["paused"] == "rate_limited")["state"]
    resume_at = paused["queue"]["nextAttemptAt"] / 1000
    if headers.get("X-RateLimit-Reset") == "in a while":
        # No usable time at all: pause a whole window, never retry at once.
        assert resume_at >= sent_at + 3500
        time.sleep(1.0)
        assert len(delivery.bulk_requests()) == 1
        assert host.request("get-state")["result"]["queue"]["paused"] == "rate_limited"
        return
    assert sent_at + 1 <= resume_at <= time.time() + 3
    host.wait_event(drained(), timeout=20)
    first, second = delivery.bulk_requests()
    assert second["time"] >= first["time"] + 1
    assert delivery.rows()[0][:3] == (url, "done", "ok")


@pytest.mark.parametrize("body", ["", "Payment Required", {"error": "no_means"}])
def test_402_of_any_body_pauses_for_the_subscription(delivery: Delivery, body: object) -> None:
    delivery.site.script("POST", BULK, [{"status": 402, "body": body}])
    host = delivery.start()
    host.request("flattr", urls=["https://blog.example/post-1"])
    state = host.wait_event(lambda s: s["queue"]["paused"] == "subscription_inactive")["state"]
    assert state["authenticated"] is True and state["queue"]["pending"] == 1
    host.request("set-subscription", subscription={"active": True})
    host.wait_event(drained())
    assert len(delivery.bulk_requests()) == 2


@pytest.mark.parametrize("body", ["", "Unauthorized", {"error": "invalid_token"}])
def test_401_of_any_body_signs_out(delivery: Delivery, body: object) -> None:
    delivery.site.script("POST", BULK, [{"status": 401, "body": body}])
    host = delivery.start()
    host.request("flattr", urls=["https://blog.example/post-1"])
    state = host.wait_event(lambda s: not s["authenticated"])["state"]
    assert state["queue"]["paused"] == "signed_out" and state["queue"]["pending"] == 1
    assert delivery.rows()[0][1] == "pending"


def test_an_oversized_success_body_is_not_read_whole(delivery: Delivery) -> None:
    url = "https://blog.example/post-1"
    delivery.site.script("POST", BULK, [{"status": 200, "body": "x" * (3 << 20)}])
    deliver(delivery, [url, url + "/2"])
    assert Counter(delivery.sent_urls()) == Counter([url, url + "/2"])


@pytest.mark.parametrize(("style", "words"), [("documented", ["ok", "flattr_once"]),
                                              ("message", ["accepted", "accepted"])])
def test_queue_list_shows_what_the_server_said(delivery: Delivery, style: str,
                                               words: list[str]) -> None:
    import subprocess

    delivery.site.configure(bulk_answer=style)
    url = "https://blog.example/twice"
    deliver(delivery, [url, url])  # the second is a repeat: "flattr_once" if told
    env = {"FLATTR_HOST_HOME": str(delivery.home), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([str(delivery.launcher), "queue", "list"], env=env,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line.rsplit("[", 1)[1].rstrip("]") for line in listed] == words
    assert all(url in line and " done " in line for line in listed)
