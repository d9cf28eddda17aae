"""Request plumbing of api.flattr.com REST v2 (document 002).

For every ``/rest/v2/...`` request, in this order:

1. ``OPTIONS``: CORS preflight, answered at once (not rate limited).
2. Response format: a suffix (``.json``; ``.as`` for activities) or the
   ``Accept`` header; anything else is ``406 not_acceptable``.
3. Route lookup: unknown resource -> ``404 not_found``, known resource with an
   unsupported method -> ``405 invalid_request``.
4. Rate limit (all resources but ``/rate_limit``): the client's hourly budget is
   charged, the four ``X-RateLimit-*`` headers go on the response, and a spent
   budget gives ``403 rate_limit_exceeded``.
5. Authentication: a presented bearer token that is unknown or revoked gives
   ``401 unauthorized``; so does a missing one where the route needs a user.
   A route's scope missing from the token gives ``403 insufficient_scope``.
6. The handler; its :class:`ApiError` becomes ``{error, error_description,
   error_uri}`` with ``Content-Type: application/json;charset=utf-8``.
7. JSONP (``jsonp`` or ``callback`` query parameter) wraps the JSON; CORS
   headers go on every answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from .. import FakeSiteError
from ..context import SiteContext
from ..ratelimit import Budget
from ..store import Token, User, parse_whole

API_PREFIX = "/rest/v2"
JSON_TYPE = "application/json;charset=utf-8"
STREAM_TYPE = "application/stream+json"
JS_TYPE = "application/javascript;charset=utf-8"
ERROR_URI = "https://developers.flattr.net/api"
MAX_BODY_BYTES = 4 * 1024 * 1024
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$.]{0,99}$")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": (
        "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Current, X-RateLimit-Reset,"
        " Location"
    ),
}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Max-Age": "600",
}


class ApiError(FakeSiteError):
    """An API error answer: HTTP status, error code and description."""

    def __init__(self, status: int, error: str, description: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        """The documented error object."""
        return {"error": self.error, "error_description": self.description,
                "error_uri": ERROR_URI}


def not_found(description: str = "The resource was not found") -> ApiError:
    """404 not_found."""
    return ApiError(404, "not_found", description)


def invalid_parameters(description: str) -> ApiError:
    """400 invalid_parameters."""
    return ApiError(400, "invalid_parameters", description)


@dataclass
class Reply:
    """A handler's successful answer."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE


@dataclass
class ApiCall:
    """One API request after format, rate limit and authentication checks."""

    ctx: SiteContext
    request: web.Request
    params: dict[str, str]
    token: Token | None
    user: User | None
    budget: Budget | None
    fmt: str
    _body: Any = None

    @property
    def scopes(self) -> frozenset[str]:
        """Scopes of the presented token (empty without one)."""
        return self.token.scopes if self.token is not None else frozenset()

    def require_user(self) -> User:
        """The authenticated user (routes with auth='user' always have one)."""
        if self.user is None:
            raise ApiError(401, "unauthorized", "You are unauthorized to access the resource"
                           " (no token?)")
        return self.user

    def flag(self, name: str) -> bool:
        """A boolean query parameter such as ``full``: present and not 0/false."""
        value = self.params.get(name)
        return value is not None and value.lower() not in ("0", "false", "no")

    def paging(self, default_count: int = 30, max_count: int = 100) -> tuple[int, int]:
        """(count, page) from the query; raises 400 invalid_parameters when bad."""
        values = []
        for name, default, low, high in (("count", default_count, 1, max_count),
                                         ("page", 1, 1, 1_000_000)):
            raw = self.params.get(name)
            if raw is None or raw == "":
                values.append(default)
                continue
            value = parse_whole(raw)
            if value is None or not low <= value <= high:
                raise invalid_parameters(
                    f"{name} must be an integer from {low} to {high}, got {raw!r}"
                )
            values.append(value)
        return values[0], values[1]

    async def body(self) -> dict[str, Any] | list[Any]:
        """The request body: JSON or form-encoded (document 002); {} when empty."""
        if self._body is not None:
            return self._body  # type: ignore[no-any-return]
        raw = await self.request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(400, "invalid_request",
                           f"request body is {len(raw)} bytes, the limit is {MAX_BODY_BYTES}")
        ctype = self.request.content_type
        result: dict[str, Any] | list[Any]
        if not raw.strip():
            result = {}
        elif ctype == "application/x-www-form-urlencoded":
            form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            result = {k: v[-1] for k, v in form.items()}
        else:
            try:
                parsed = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "invalid_request", f"body is not valid JSON: {exc}") from exc
            if not isinstance(parsed, dict | list):
                raise ApiError(400, "invalid_request",
                               f"body must be a JSON object or array, got {type(parsed).__name__}")
            result = parsed
        self._body = result
        return result

    async def fields(self) -> dict[str, Any]:
        """Body as an object plus query parameters (body wins); 400 if it is a list."""
        body = await self.body()
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        merged: dict[str, Any] = dict(self.params)
        merged.update(body)
        return merged


Handler = Callable[[ApiCall], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """A REST resource: method, path pattern, handler and its access rules.

    ``auth`` is ``"none"`` (tokens ignored), ``"optional"`` or ``"user"``.
    """

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: str = "optional"
    scope: str | None = None
    rate_limited: bool = True
    formats: frozenset[str] = frozenset({"json"})


def route(method: str, path: str, handler: Handler, **kw: Any) -> Route:
    """Build a route; ``{name}`` in ``path`` matches one path segment."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path.rstrip("/"))
    return Route(method, re.compile(f"^{regex}/?$"), handler, **kw)


def split_format(path: str) -> tuple[str, str | None]:
    """Strip a format suffix from the last segment: ``/categories.json`` -> json."""
    head, _, last = path.rpartition("/")
    if "." in last:
        name, _, ext = last.rpartition(".")
        return f"{head}/{name}", ext.lower()
    return path, None


def _accepts(header: str, allowed: set[str]) -> bool:
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0 and media.lower() in allowed:
            return True
    return False


def negotiate(route_formats: frozenset[str], suffix: str | None, accept: str) -> str:
    """Pick the response format; raises 406 not_acceptable."""
    names = {"json": "json", "as": "as"}
    if suffix is not None:
        fmt = names.get(suffix)
        if fmt is None or fmt not in route_formats:
            raise ApiError(406, "not_acceptable",
                           f"format .{suffix} is not available here; use one of: "
                           + ", ".join(f".{f}" for f in sorted(route_formats)))
        return fmt
    if not accept.strip():
        return sorted(route_formats)[0] if "json" not in route_formats else "json"
    allowed = {"*/*", "application/*"}
    if "json" in route_formats:
        allowed |= {"application/json", "text/javascript", "application/javascript"}
    if "as" in route_formats:
        allowed |= {STREAM_TYPE, "application/json"}
    if not _accepts(accept, allowed):
        raise ApiError(406, "not_acceptable",
                       f"cannot answer with any of Accept: {accept}; available: "
                       + ", ".join(sorted(allowed - {"*/*", "application/*"})))
    return "json" if "json" in route_formats else "as"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if header:
        return ""  # presented but not a bearer token: treated as invalid
    return None


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def make_response(status: int, body: Any, *, content_type: str, headers: dict[str, str],
                  callback: str | None) -> web.Response:
    """Serialise a body (None -> empty, bytes as given) with JSONP and CORS applied."""
    # Documented order: Content-Type, then the X-RateLimit-* headers; CORS last.
    out = {"Content-Type": content_type}
    out.update(headers)
    out.update(CORS_HEADERS)
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body  # sent as given (the bulk endpoint's other answer styles)
    elif callback is not None:
        data = callback.encode() + b"(" + encode(body) + b");"
        content_type = JS_TYPE
    else:
        data = encode(body)
    out["Content-Type"] = content_type
    out = {"Content-Type": out.pop("Content-Type"), **out}
    return web.Response(status=status, body=data, headers=out)


class Api:
    """Dispatches ``/rest/v2`` requests to the routes (see the module docstring)."""

    def __init__(self, ctx: SiteContext, routes: list[Route]) -> None:
        self.ctx = ctx
        self.routes = routes

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        methods: set[str] = set()
        for r in self.routes:
            m = r.pattern.match(path)
            if m is None:
                continue
            if r.method == method:
                return r, m.groupdict()
            methods.add(r.method)
        if methods:
            raise ApiError(405, "invalid_request",
                           f"method {method} is not allowed here; allowed: "
                           + ", ".join(sorted(methods)), headers={"Allow": ", ".join(
                               sorted(methods))})
        raise not_found()

    def _client_key(self, request: web.Request, token: Token | None) -> str:
        if token is not None and not token.revoked:
            return f"token:{token.token}"
        return f"addr:{request.remote}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for every method on ``/rest/v2/...``."""
        params = {k: v for k, v in request.query.items()}
        callback = params.get("jsonp") or params.get("callback")
        if request.method == "OPTIONS":
            asked = request.headers.get("Access-Control-Request-Headers", "")
            headers = dict(PREFLIGHT_HEADERS)
            headers["Access-Control-Allow-Headers"] = asked or "Authorization, Content-Type"
            return make_response(204, None, content_type=JSON_TYPE, headers=headers,
                                 callback=None)
        rate_headers: dict[str, str] = {}
        try:
            if callback is not None and not _CALLBACK.match(callback):
                callback = None
                raise invalid_parameters("jsonp callback must be a JavaScript identifier"
                                         " of at most 100 characters")
            path, suffix = split_format(request.path[len(API_PREFIX):] or "/")
            # Rate limiting applies even to unknown resources; format errors come first.
            try:
                found, args = self._match(request.method, path)
            except ApiError:
                negotiate(frozenset({"json", "as"}), suffix, request.headers.get("Accept", ""))
                spent = self.ctx.limiter.hit(self._client_key(request, None))
                rate_headers = spent.headers()
                if spent.exceeded:
                    raise _rate_limited() from None
                raise
            fmt = negotiate(found.formats, suffix, request.headers.get("Accept", ""))
            raw_token = _bearer(request) if found.auth != "none" else None
            token = self.ctx.store.token(raw_token) if raw_token else None
            budget: Budget | None = None
            if found.rate_limited:
                budget = self.ctx.limiter.hit(self._client_key(request, token))
                rate_headers = budget.headers()
                if budget.exceeded:
                    raise _rate_limited()
            user = None
            if raw_token is not None:
                if token is None or token.revoked:
                    raise ApiError(401, "unauthorized", "The access token is invalid or revoked")
                user = self.ctx.store.user_by_id(token.user_id)
            if found.auth == "user" and user is None:
                raise ApiError(401, "unauthorized",
                               "You are unauthorized to access the resource (no token?)")
            if found.scope is not None and (token is None or found.scope not in token.scopes):
                raise ApiError(403, "insufficient_scope",
                               f"this resource needs the scope {found.scope!r}")
            params.update(args)
            call = ApiCall(self.ctx, request, params, token, user, budget, fmt)
            reply = await found.handler(call)
        except ApiError as exc:
            headers = dict(rate_headers)
            headers.update(exc.headers)
            return make_response(exc.status, exc.body(), content_type=JSON_TYPE,
                                 headers=headers, callback=callback)
        headers = dict(rate_headers)
        headers.update(reply.headers)
        return make_response(reply.status, reply.body, content_type=reply.content_type,
                             headers=headers, callback=callback)


def _rate_limited() -> ApiError:
    return ApiError(403, "rate_limit_exceeded",
                    "Too many requests the last hour; the budget resets at X-RateLimit-Reset")
