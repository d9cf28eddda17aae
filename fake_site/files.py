"""files.flattr.com: the domains list the original Flattr extension downloads.

The original extension (flattr/flattr-extension, read for its behaviour) asks
``HEAD https://files.flattr.com/domains.json``, compares ``Last-Modified`` with
when it last downloaded the list, and only then ``GET``s it and checks that it
is an object with a ``status`` object and an ``author`` array. ``status`` is a
tree of host labels read right to left (``{"com": {"example": 1}}`` is
example.com); a number ends the walk: 0 undefined, 1 enabled, 2 disabled,
3 blocked; ``"*"`` stands for any further label, ``""`` for every path and
``"/first-segment"`` for one path. ``author`` lists domains whose flattrs go to
the page's author, and ``video`` (optional) domains with videos.

The fake serves one such document with a strong ``ETag`` and a ``Last-Modified``;
``If-None-Match`` and ``If-Modified-Since`` give ``304``. The admin API replaces
it (``POST /__admin/files/domains``, docs/fake-site.md); a replacement always gets
a later ``Last-Modified`` than the one before, so a ``HEAD`` tells it changed.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from collections.abc import Callable
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import web

DOMAINS_PATH = "/domains.json"
JSON_TYPE = "application/json; charset=utf-8"

# The fake's own small list in the original's format (not the original's data).
DEFAULT_DOMAINS: dict[str, Any] = {
    "author": ["github.com", "medium.com", "soundcloud.com", "twitter.com", "vimeo.com",
               "youtube.com"],
    "status": {
        "com": {"example": 1, "blocked-example": 3, "disabled-example": 2,
                "mixed-example": {"*": 1, "shop": 3}},
        "org": {"example": {"": 1, "/private": 3}},
        "test": {"*": 1},
    },
    "video": ["vimeo.com", "youtube.com"],
}


class DomainsError(ValueError):
    """A replacement list that the original extension would reject."""


def check_domains(document: object) -> dict[str, Any]:
    """``document`` if it has the shape the original extension accepts, else DomainsError.

    That shape: a JSON object whose ``status`` is an object and ``author`` an
    array of strings; ``video``, when present, an array of strings.
    """
    if not isinstance(document, dict):
        raise DomainsError(f"domains must be a JSON object, got {type(document).__name__}")
    if not isinstance(document.get("status"), dict):
        raise DomainsError("domains must have a status object (host labels -> status)")
    for key in ("author", "video"):
        value = document.get(key, [] if key == "video" else None)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DomainsError(f"domains must have {key} as an array of domain strings")
    return document


def http_date(seconds: int) -> str:
    """An IMF-fixdate (``Tue, 01 Dec 2026 21:00:00 GMT``)."""
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return format_datetime(when, usegmt=True)


class DomainsFile:
    """The current domains.json: its bytes, ETag and Last-Modified (whole seconds)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.body = b""
        self.etag = ""
        self.last_modified = 0
        self.reset()

    def reset(self) -> None:
        """Back to the default list, modified now."""
        self.last_modified = 0
        self.replace(json.dumps(copy.deepcopy(DEFAULT_DOMAINS), indent=2).encode())

    def replace(self, body: bytes, last_modified: int | None = None) -> None:
        """Serve ``body`` from now on. Without ``last_modified``, it is now, and at
        least one second after the previous list (HTTP dates have whole seconds)."""
        if last_modified is None:
            last_modified = max(int(self._now()), self.last_modified + 1)
        self.body = body
        self.last_modified = last_modified
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    def describe(self) -> dict[str, Any]:
        """Admin view: ETag, Last-Modified (Unix and HTTP date), size."""
        return {"etag": self.etag, "last_modified": self.last_modified,
                "last_modified_http": http_date(self.last_modified), "bytes": len(self.body)}

    def not_modified(self, request: web.Request) -> bool:
        """RFC 9110 13.1: If-None-Match decides when present, else If-Modified-Since."""
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or self.etag in tags
        ims = request.headers.get("If-Modified-Since")
        if ims is None:
            return False
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False  # an invalid date is ignored (RFC 9110 13.1.3)
        return self.last_modified <= since


def files_app_routes(domains: DomainsFile) -> list[web.RouteDef]:
    """Routes of the files.flattr.com application."""

    async def serve(request: web.Request) -> web.Response:
        headers = {"ETag": domains.etag, "Last-Modified": http_date(domains.last_modified),
                   "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*",
                   "Access-Control-Expose-Headers": "ETag"}
        if domains.not_modified(request):
            return web.Response(status=304, headers=headers)
        return web.Response(body=domains.body, headers={**headers, "Content-Type": JSON_TYPE})

    async def preflight(request: web.Request) -> web.Response:
        # Pages on other origins may send conditional headers (CORS preflight).
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, HEAD",
            "Access-Control-Allow-Headers": "If-None-Match, If-Modified-Since",
            "Access-Control-Max-Age": "600"})

    async def other(request: web.Request) -> web.Response:
        return web.Response(status=404, text=f"files.flattr.com serves only {DOMAINS_PATH}\n")

    return [web.get(DOMAINS_PATH, serve), web.options(DOMAINS_PATH, preflight),
            web.route("*", "/{tail:.*}", other)]


def admin_routes(domains: DomainsFile,
                 error: Callable[[int, str, str], Exception]) -> list[web.RouteDef]:
    """``GET`` / ``POST /__admin/files/domains``: see or replace the list.

    POST body: ``{"domains": {...}}`` (checked like the original extension checks
    it) or ``{"raw": "text"}`` (served as is, to test an extension's handling of a
    broken list), with ``last_modified`` (Unix seconds) optional.
    """

    async def show(request: web.Request) -> web.Response:
        return web.json_response(domains.describe())

    async def replace(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise error(400, "bad_json", f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict) or ("domains" in body) == ("raw" in body):
            raise error(400, "bad_value", "give exactly one of domains (a JSON object) or raw"
                        " (a string)")
        stamp = body.get("last_modified")
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int)
                                  or not 0 <= stamp <= 253402300799):
            raise error(400, "bad_value", f"last_modified must be Unix seconds, got {stamp!r}")
        if "raw" in body:
            if not isinstance(body["raw"], str):
                raise error(400, "bad_value", "raw must be a string")
            data = body["raw"].encode()
        else:
            try:
                data = json.dumps(check_domains(body["domains"]), indent=2).encode()
            except DomainsError as exc:
                raise error(400, "bad_domains", str(exc)) from exc
        domains.replace(data, stamp)
        return web.json_response(domains.describe())

    return [web.get("/__admin/files/domains", show), web.post("/__admin/files/domains", replace)]
