"""Classifying bulk responses: the whole status x body table of docs/protocol.md."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flattr_host.core.session import PaymentRequired, RateLimited, Unauthorized
from flattr_host.delivery.api import (
    RATE_LIMIT_MIN_S,
    RATE_LIMIT_WINDOW_S,
    Action,
    Response,
    classify,
    read_outcomes,
)

URLS = ["https://a.example/1", "https://a.example/2"]
NOW = 1_800_000_000.0

#: 2xx bodies a real service might send: none of them may ever cause a resend.
SUCCESS_BODIES: list[object] = [
    b"",
    b"   \r\n",
    b"OK",
    b"<html><body>Thanks</body></html>",
    b'{"results": [',
    b"\xff\xfe garbage",
    b"[" * 100_000,  # deep nesting: json raises RecursionError
    [],
    {},
    "OK",
    None,
    0,
    {"message": "ok", "count": 2},
    [{"url": URLS[0], "status": "ok"}, {"url": URLS[1], "status": "ok"}],
    {"results": "all good"},
    {"results": [None, None]},
    {"results": [{"url": 5, "status": "ok"}]},
    {"results": [{"link": URLS[0], "result": "flattred"}]},
    {"error": "something"},  # a 2xx still means accepted
]


def response(status: int, body: object = b"", **headers: str) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)


def ok_body() -> dict[str, object]:
    return {"results": [{"url": URLS[0], "status": "ok", "thing_id": 1},
                        {"url": URLS[1], "status": "flattr_once", "thing_id": 2}]}


def test_success_records_per_url_outcomes() -> None:
    decision = classify(response(200, ok_body()), URLS, 0.0)
    assert decision.action is Action.DONE and decision.note is None
    assert decision.outcomes == {0: "ok", 1: "flattr_once"}


@pytest.mark.parametrize("status", [200, 201, 202, 203, 204, 206, 299])
@pytest.mark.parametrize("body", SUCCESS_BODIES, ids=lambda b: repr(b)[:40])
def test_every_2xx_is_done_whatever_the_body(status: int, body: object) -> None:
    decision = classify(response(status, body), URLS, 0.0)
    assert decision.action is Action.DONE, decision
    assert decision.reason == f"http {status}"
    assert decision.outcomes == {}
    assert decision.note  # the submitter logs it at debug level


def test_documented_body_in_another_order_or_partial_still_counts() -> None:
    body = {"results": [{"url": URLS[1], "status": "flattr_owner"}, {"url": "x", "status": "ok"}]}
    decision = classify(response(201, body), URLS, 0.0)
    assert decision.action is Action.DONE
    assert decision.outcomes == {1: "flattr_owner"}
    assert decision.note == "results say nothing of 1 URLs"


def test_a_url_sent_twice_gets_each_result_in_order() -> None:
    urls = [URLS[0], URLS[1], URLS[0]]
    body = {"results": [{"url": URLS[0], "status": "ok"}, {"url": URLS[1], "status": "ok"},
                        {"url": URLS[0], "status": "flattr_once"}]}
    outcomes, note = read_outcomes(json.dumps(body).encode(), urls)
    assert outcomes == {0: "ok", 1: "ok", 2: "flattr_once"} and note is None


def test_outcome_words_are_plain_and_short() -> None:
    body = {"results": [{"url": URLS[0], "status": "x" * 65},
                        {"url": URLS[1], "status": "ok\n\x1b[31mred"}]}
    outcomes, note = read_outcomes(json.dumps(body).encode(), URLS)
    assert outcomes == {} and note


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504, 525, 599, 501, 520])
def test_retryable_statuses(status: int) -> None:
    decision = classify(response(status, b"<html>down</html>", retry_after="30"), URLS, 100.0)
    assert decision.action is Action.RETRY and decision.retry_after == 130.0


@pytest.mark.parametrize("status", [600, 799, 999, 100, 199])
def test_statuses_outside_the_known_classes_are_retried(status: int) -> None:
    assert classify(response(status, b""), URLS, 0).action is Action.RETRY


def test_retry_after_garbled_or_absurd() -> None:
    assert classify(response(503, retry_after="soon"), URLS, 0).retry_after is None
    far = classify(response(503, retry_after="999999999999"), URLS, 0).retry_after
    assert far == 86400.0
    # http.client decodes headers as Latin-1: byte 0xB2 arrives as "²", a digit to
    # str.isdigit() that int() refuses. Ignored, like any unreadable value.
    for odd in ("\u00b2", "1\u00b9"):
        assert classify(response(503, retry_after=odd), URLS, 0).retry_after is None
        paused = classify(response(429, retry_after=odd), URLS, 0)
        assert paused.action is Action.PAUSE and isinstance(paused.event, RateLimited)


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 307, 308])
def test_redirects_are_not_followed_and_not_lost(status: int) -> None:
    decision = classify(response(status, b"", location="https://evil.example/"), URLS, 0)
    assert decision.action is Action.RETRY
    assert decision.reason == f"http {status} redirect not followed"


@pytest.mark.parametrize("body", [b"", b"<html>401</html>", {"error": "unauthorized"},
                                  {"error": "invalid_token"}, {"results": []}])
def test_401_whatever_the_body(body: object) -> None:
    assert classify(response(401, body), URLS, 0).event == Unauthorized()


@pytest.mark.parametrize("body", [b"", b"Payment Required", {"error": "subscription_inactive"},
                                  {"error": "no_means"}, {"message": "pay"}])
def test_402_whatever_the_body(body: object) -> None:
    assert classify(response(402, body), URLS, 0).event == PaymentRequired()


def test_rate_limit_pauses_until_reset_header() -> None:
    decision = classify(response(403, {"error": "rate_limit_exceeded"},
                                 x_ratelimit_reset="1800002000"), URLS, NOW)
    assert decision.event == RateLimited(1800002000.0)
    no_header = classify(response(403, {"error": "rate_limit_exceeded"}), URLS, NOW)
    assert no_header.event == RateLimited(NOW + RATE_LIMIT_WINDOW_S)



@pytest.mark.parametrize(
    ("reset", "until"),
    [
        ("1800000500", NOW + 500),  # the documented Unix timestamp
        (" 1800000500 ", NOW + 500),
        ("1800000500.5", NOW + 500.5),
        ("120", NOW + 120),  # small: seconds from now
        ("", NOW + RATE_LIMIT_WINDOW_S),
        ("soon", NOW + RATE_LIMIT_WINDOW_S),
        ("nan", NOW + RATE_LIMIT_WINDOW_S),
        ("inf", NOW + RATE_LIMIT_WINDOW_S),
        ("-5", NOW + RATE_LIMIT_WINDOW_S),
        ("1700000000", NOW + RATE_LIMIT_MIN_S),  # already past: still a short pause
        ("0", NOW + RATE_LIMIT_MIN_S),
        ("4000000000", NOW + RATE_LIMIT_WINDOW_S + RATE_LIMIT_MIN_S),  # capped
    ],
)
def test_rate_limit_reset_header_of_any_shape(reset: str, until: float) -> None:
    decision = classify(response(403, {"error": "rate_limit_exceeded"},
                                 x_ratelimit_reset=reset), URLS, NOW)
    assert decision.event == RateLimited(until)


def test_rate_limit_without_reset_uses_retry_after() -> None:
    decision = classify(response(429, b"", retry_after="90"), URLS, NOW)
    assert decision.event == RateLimited(NOW + 90)


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (429, b"", {}),
        (429, b"Too Many Requests", {"x_ratelimit_reset": "1800000100"}),
        (429, {"error": "whatever"}, {}),
        (403, b"", {"x_ratelimit_remaining": "0"}),
        (403, b"<html>slow down</html>", {"x_ratelimit_remaining": "0",
                                           "x_ratelimit_reset": "garbled"}),
    ],
)
def test_rate_limits_without_the_documented_body(status: int, body: object,
                                                  headers: dict[str, str]) -> None:
    decision = classify(response(status, body, **headers), URLS, NOW)
    assert isinstance(decision.event, RateLimited)
    assert NOW + RATE_LIMIT_MIN_S <= decision.event.until <= NOW + 3700


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", {}),
        (b"Forbidden", {"x_ratelimit_remaining": "12"}),
        ({"error": "insufficient_scope"}, {"x_ratelimit_remaining": "0"}),
    ],
)
def test_403_that_is_not_a_rate_limit_fails(body: object, headers: dict[str, str]) -> None:
    decision = classify(response(403, body, **headers), URLS, NOW)
    assert decision.action is Action.FAIL and decision.reason.startswith("http 403")


@pytest.mark.parametrize("status", [400, 403, 404, 405, 406, 410, 413, 422, 451, 499])
def test_other_client_errors_fail_with_the_reason(status: int) -> None:
    decision = classify(response(status, {"error": "invalid_request"}), URLS, 0)
    assert decision.action is Action.FAIL and decision.reason == f"http {status} invalid_request"
    bare = classify(response(status, b"<html>no</html>"), URLS, 0)
    assert bare.action is Action.FAIL and bare.reason == f"http {status}"


def test_error_codes_are_plain_words_only() -> None:
    decision = classify(response(400, {"error": "bad\n\x1b[31m" + "x" * 100}), URLS, 0)
    assert decision.reason == "http 400"


def test_idle_keep_alive_connection_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection idle past IDLE_REUSE_S is not reused (servers drop them silently)."""
    import http.server
    import threading

    from flattr_host.delivery import api

    connections: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def setup(self) -> None:
            connections.append(1)
            super().setup()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    clock = [100.0]
    monkeypatch.setattr(api, "_monotonic", lambda: clock[0])
    client = api.ApiClient(f"http://127.0.0.1:{server.server_address[1]}", None, 5.0)
    try:
        for _ in range(3):
            assert client.post_bulk("t", URLS).status == 200
            clock[0] += api.IDLE_REUSE_S / 2
        assert len(connections) == 1  # reused while fresh
        clock[0] += api.IDLE_REUSE_S
        assert client.post_bulk("t", URLS).status == 200
        assert len(connections) == 2
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_after_an_informational_answer_the_connection_is_not_reused() -> None:
    """A 103 then the real 200 on one socket: the 200 must not answer the next request."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    answers = [b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"]
    connections: list[int] = []

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            connections.append(1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(answer)  # left open: only the client may decide not to reuse it

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    from flattr_host.delivery.api import ApiClient

    client = ApiClient(f"http://127.0.0.1:{listener.getsockname()[1]}", None, 5.0)
    try:
        first = client.post_bulk("t", URLS)
        assert first.status == 103
        assert classify(first, URLS, 0).action is Action.RETRY
        assert client.post_bulk("t", URLS).status == 503  # its own answer, not the 200
        assert len(connections) == 2
    finally:
        client.close()
        listener.close()


def test_a_pause_verdict_always_carries_the_machines_event() -> None:
    from flattr_host.delivery.api import Verdict

    with pytest.raises(ValueError, match="pause verdict"):
        Verdict(Action.PAUSE, "http 401")
    with pytest.raises(ValueError, match="retry verdict"):
        Verdict(Action.RETRY, "http 500", event=Unauthorized())


@pytest.mark.parametrize("base", ["https://api.example:99999", "https://api.example:port",
                                  "ftp://api.example", "https://"])
def test_a_bad_api_base_is_a_network_error_naming_it(base: str) -> None:
    from flattr_host.delivery.api import ApiClient, NetworkError

    with pytest.raises(NetworkError, match="API base"):
        ApiClient(base, None, 5.0, environ={})


_LATIN1 = st.text(st.characters(max_codepoint=0xFF, exclude_categories=("Cs",)), max_size=40)
_HEADER_VALUES = st.one_of(
    _LATIN1, st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["Thu, 01 Jan 1970 00:20:00 GMT", "Sun, 31 Dec 9999 23:59:59 GMT",
                     "Mon, 00 Foo 0000 99:99:99 GMT", "\u00b2", "1_000", " 0 "]))


@example(status=503, headers={"retry-after": "\u00b2"}, body=b"")
@example(status=403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "\u00b2",
                              "retry-after": "1\u00b9"}, body=b"")
@given(status=st.integers(0, 999),
       headers=st.dictionaries(
           st.sampled_from(["retry-after", "x-ratelimit-reset", "x-ratelimit-remaining",
                            "content-type", "location"]), _HEADER_VALUES),
       body=st.one_of(st.binary(max_size=200), _LATIN1.map(str.encode),
                      st.recursive(st.none() | st.booleans() | st.integers() | _LATIN1,
                                   lambda inner: st.lists(inner) | st.dictionaries(_LATIN1, inner),
                                   max_leaves=10).map(lambda v: json.dumps(v).encode())))
def test_any_answer_is_classified_without_raising(status: int, headers: dict[str, str],
                                                  body: bytes) -> None:
    """Whatever a server answers (as http.client hands it over: Latin-1 header values),
    classify decides, and its times stay within their bounds."""
    now = 1_000_000.0
    decision = classify(Response(status, headers, body), URLS, now)
    if 200 <= status < 300:
        assert decision.action is Action.DONE
    if decision.retry_after is not None:
        assert now <= decision.retry_after <= now + 86400.0
    if isinstance(decision.event, RateLimited):
        assert now < decision.event.until <= now + 3600.0 + 60.0
