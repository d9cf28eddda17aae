"""``POST /rest/v2/flattr/bulk``: the endpoint the extension and the host submit to.

Upstream never documented its answer; this fake fixes a contract, documented in
docs/fake-site.md (with what the host must not take from it):

- ``Authorization: Bearer <token>`` with scope ``flattr``; a missing, unknown or
  revoked token -> ``401 unauthorized``.
- Body: a JSON array of ``{"url": "..."}`` objects, at most ``MAX_ITEMS``; any
  other shape, or more items -> ``400 invalid_request`` naming the count and limit.
- Account subscription inactive -> ``402 subscription_inactive`` (our choice;
  document 000 only says the extension deactivates its subscription on 402).
  Nothing is stored then.
- ``200 {"results": [{"url", "status", "thing_id"}, ...]}`` in input order, where
  status is ``ok`` (flattr stored), ``flattr_once`` (already flattred, also for a
  repeat within the same request), ``flattr_owner`` (the user's own thing) or
  ``invalid_url`` (not an absolute http(s) URL of at most 8 KiB; ``thing_id`` null).
  A URL that is not yet a thing becomes an unclaimed thing; an auto-submit URL
  creates its thing with its metadata.
- Rate limited like every resource (``403 rate_limit_exceeded``).
Check order: rate limit, 401, 403 scope, 400 body, 402.

Since nobody knows the real service's success answer, admin ``config
{"bulk_answer": style}`` picks one of :data:`STYLES` (docs/fake-site.md); the
flattrs are stored the same way whatever the style.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..context import UnknownOwner
from ..store import Thing
from ..urls import is_flattrable, parse_auto_submit
from .core import ApiCall, ApiError, Reply, Route, route

MAX_ITEMS = 500

TEXT_TYPE = "text/plain; charset=utf-8"


def _documented(results: list[dict[str, Any]]) -> Reply:
    return Reply({"results": results})


def _other_list(results: list[dict[str, Any]]) -> Reply:
    return Reply([{"url": r["url"], "status": "ok" if r["status"] == "ok" else "error",
                   "message": r["status"]} for r in results])


def _other_results(results: list[dict[str, Any]]) -> Reply:
    return Reply({"results": [{"link": r["url"], "result": r["status"], "id": r["thing_id"]}
                              for r in results]})


#: The success answers the fake can give: style -> the reply for the per-URL
#: results (the documented body is the default; the others are answers a real
#: service might plausibly give, none of them published).
STYLES: dict[str, Callable[[list[dict[str, Any]]], Reply]] = {
    "documented": _documented,
    "empty": lambda _r: Reply(b"", content_type=TEXT_TYPE),
    "created": lambda _r: Reply(b"", status=201, content_type=TEXT_TYPE),
    "created_json": lambda r: Reply({"created": len(r)}, status=201),
    "accepted": lambda _r: Reply(b"", status=202, content_type=TEXT_TYPE),
    "accepted_json": lambda r: Reply({"status": "queued", "count": len(r)}, status=202),
    "no_content": lambda _r: Reply(None, status=204),
    "text": lambda _r: Reply(b"OK\n", content_type=TEXT_TYPE),
    "html": lambda _r: Reply(b"<!doctype html><title>Thanks</title><p>Flattred.</p>",
                             content_type="text/html; charset=utf-8"),
    "unknown_json": lambda r: Reply({"data": {"accepted": len(r)}, "version": 2}),
    "empty_list": lambda _r: Reply([]),
    "empty_object": lambda _r: Reply({}),
    "json_string": lambda _r: Reply("OK"),
    "message": lambda r: Reply({"message": "ok", "flattrs": len(r)}),
    "other_list": _other_list,
    "other_results": _other_results,
}


def _validate(body: object) -> list[str]:
    if not isinstance(body, list):
        raise ApiError(400, "invalid_request",
                       f"body must be a JSON array of {{\"url\": ...}} objects,"
                       f" got {type(body).__name__}")
    if len(body) > MAX_ITEMS:
        raise ApiError(400, "invalid_request",
                       f"got {len(body)} items, the maximum is {MAX_ITEMS} per request")
    urls: list[str] = []
    for index, item in enumerate(body):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise ApiError(400, "invalid_request",
                           f"item {index} must be an object with a string \"url\"")
        urls.append(item["url"])
    return urls


async def bulk(call: ApiCall) -> Reply:
    """Flattr many URLs at once (see the module docstring for the contract)."""
    user = call.require_user()
    raw = await call.request.read()
    body = await call.body() if raw.strip() else None
    urls = _validate(body)
    if not user.subscription_active:
        raise ApiError(402, "subscription_inactive",
                       "The account's subscription is not active; nothing was flattred")
    results: list[dict[str, Any]] = []
    for url in urls:
        if not is_flattrable(url):
            results.append({"url": url, "status": "invalid_url", "thing_id": None})
            continue
        thing = _thing(call, url)
        status = call.ctx.flattr(user, thing)
        results.append({"url": url, "status": status, "thing_id": thing.id})
    return STYLES[call.ctx.bulk_answer](results)


def _thing(call: ApiCall, url: str) -> Thing:
    try:
        thing = call.ctx.thing_for_url(url, create_plain=True)
    except UnknownOwner:
        # An auto-submit URL naming an unknown user: flattr its URL, unclaimed.
        auto = parse_auto_submit(url)
        assert auto is not None
        thing = call.ctx.thing_for_url(auto.url, create_plain=True)
    assert thing is not None
    return thing


def routes() -> list[Route]:
    """The bulk route (before ``/flattr`` is irrelevant: patterns are anchored)."""
    return [route("POST", "/flattr/bulk", bulk, auth="user", scope="flattr")]
