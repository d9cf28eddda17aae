"""Classifying bulk responses: documented statuses and garbage."""

from __future__ import annotations

import json

import pytest

from flattr_host.api import Response, classify

URLS = ["https://a.example/1", "https://a.example/2"]


def response(status: int, body: object = b"", **headers: str) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)


def ok_body() -> dict[str, object]:
    return {"results": [{"url": URLS[0], "status": "ok", "thing_id": 1},
                        {"url": URLS[1], "status": "flattr_once", "thing_id": 2}]}


def test_success_records_per_url_outcomes() -> None:
    decision = classify(response(200, ok_body()), URLS, 0.0)
    assert decision.kind == "done"
    assert decision.outcomes == {URLS[0]: "ok", URLS[1]: "flattr_once"}


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504, 525, 599, 501, 520])
def test_retryable_statuses(status: int) -> None:
    decision = classify(response(status, b"<html>down</html>", retry_after="30"), URLS, 100.0)
    assert decision.kind == "retry" and decision.retry_after == 130.0


def test_401_402() -> None:
    assert classify(response(401, {"error": "unauthorized"}), URLS, 0).kind == "unauthorized"
    assert classify(response(402, {"error": "subscription_inactive"}), URLS, 0).kind == \
        "payment_required"


def test_rate_limit_pauses_until_reset_header() -> None:
    decision = classify(response(403, {"error": "rate_limit_exceeded"},
                                 x_ratelimit_reset="5000"), URLS, 100.0)
    assert decision.kind == "rate_limited" and decision.retry_after == 5000.0
    no_header = classify(response(403, {"error": "rate_limit_exceeded"}), URLS, 100.0)
    assert no_header.retry_after == 3700.0


@pytest.mark.parametrize("status", [400, 403, 404, 406, 422])
def test_other_client_errors_fail_with_the_reason(status: int) -> None:
    decision = classify(response(status, {"error": "invalid_request"}), URLS, 0)
    assert decision.kind == "fail" and decision.reason == f"http {status} invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>ok</html>",
        b'{"results": [',
        b"[]",
        {"results": "yes"},
        {"results": [{"url": URLS[0], "status": "ok"}]},  # wrong length
        {"results": [{"url": URLS[1], "status": "ok"}, {"url": URLS[0], "status": "ok"}]},
        {"results": [{"url": URLS[0], "status": 5}, {"url": URLS[1], "status": "ok"}]},
        {"results": [None, None]},
    ],
)
def test_garbage_success_bodies_are_retryable(body: object) -> None:
    assert classify(response(200, body), URLS, 0).kind == "retry"
