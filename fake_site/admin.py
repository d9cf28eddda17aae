"""Admin API for tests, under ``/__admin/`` on the API port, loopback only.

All bodies and answers are JSON. Errors: ``{"error": "...", "description": "..."}``
with 400 (bad input), 403 (not loopback), 404 (unknown user/token) or 409
(username taken). The endpoints are listed in docs/fake-site.md.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .api.bulk import STYLES as BULK_STYLES
from .context import SiteContext
from .journal import ScriptError, parse_step
from .store import StoreError

MAX_WAIT = 60.0


class AdminError(Exception):
    """An admin request that cannot be served; becomes a JSON error answer."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise AdminError(400, "bad_json", f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise AdminError(400, "bad_json", "body must be a JSON object")
    return body


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _float(value: object, name: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AdminError(400, "bad_value", f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError as exc:
        raise AdminError(400, "bad_value", f"{name} must be a number, got {value!r}") from exc
    if not low <= number <= high:
        raise AdminError(400, "bad_value", f"{name} must be in [{low:g}, {high:g}], got {number:g}")
    return number


def _filters(query: Any) -> dict[str, Any]:
    return {
        "method": query.get("method") or None,
        "path": query.get("path") or None,
        "path_prefix": query.get("path_prefix") or None,
        "server": query.get("server") or None,
        "since": int(_float(query.get("since"), "since", 0, 0, 1e15)),
    }


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host == "localhost" or _is_loopback(host)


class Admin:
    """The admin endpoints bound to one :class:`SiteContext`."""

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """aiohttp route table."""
        p = "/__admin"
        return [
            web.get(f"{p}/info", self.info),
            web.post(f"{p}/reset", self.reset),
            web.post(f"{p}/users", self.create_user),
            web.post(f"{p}/users/{{username}}/subscription", self.set_subscription),
            web.post(f"{p}/tokens/revoke", self.revoke),
            web.post(f"{p}/script", self.script),
            web.get(f"{p}/journal", self.journal),
            web.get(f"{p}/journal/wait", self.journal_wait),
            web.post(f"{p}/apps", self.create_app),
            web.post(f"{p}/partners", self.create_partner),
            web.get(f"{p}/webhooks", self.webhooks),
            web.post(f"{p}/config", self.config),
            web.post(f"{p}/clock", self.clock),
        ]

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Loopback-only access and JSON errors for ``/__admin/``."""
        if not request.path.startswith("/__admin/"):
            return await handler(request)  # type: ignore[no-any-return]
        if not _is_loopback(request.remote):
            return _json({"error": "forbidden", "description":
                          f"admin API is loopback only, not {request.remote}"}, 403)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except AdminError as exc:
            return _json({"error": exc.error, "description": exc.description}, exc.status)

    def _user(self, username: str) -> Any:
        user = self.ctx.store.user_by_name(username)
        if user is None:
            raise AdminError(404, "no_such_user", f"no user named {username!r}")
        return user

    async def info(self, request: web.Request) -> web.Response:
        """GET info: endpoints, CA path, SPKI pin, open push sockets."""
        ep = self.ctx.endpoints
        return _json({"site": ep.site, "api": ep.api, "push": ep.push, "files": ep.files,
                      "ca": str(self.ctx.certs.ca), "spki": self.ctx.certs.spki,
                      "seeded": self.ctx.seeded, "push_open": self.ctx.push.describe()})

    async def reset(self, request: web.Request) -> web.Response:
        """POST reset {seed?}: back to the start-up state."""
        body = await _body(request)
        seed = body.get("seed")
        if seed is not None and not isinstance(seed, bool):
            raise AdminError(400, "bad_value", f"seed must be a boolean, got {seed!r}")
        self.ctx.reset(seeded=seed)
        return _json({"reset": True, "seeded": self.ctx.seeded})

    async def create_user(self, request: web.Request) -> web.Response:
        """POST users {username, password?, subscription?: {active}, scopes?}.

        Answers {username, token, password, subscription}; the token has all scopes
        unless ``scopes`` is given."""
        body = await _body(request)
        username = body.get("username")
        if not isinstance(username, str) or not 1 <= len(username) <= 64 or "/" in username:
            raise AdminError(400, "bad_value", f"username must be 1-64 chars without '/', got"
                             f" {username!r}")
        password = body.get("password", username)
        subscription = body.get("subscription", {"active": True})
        active = subscription.get("active") if isinstance(subscription, dict) else None
        if not isinstance(password, str) or not isinstance(active, bool):
            raise AdminError(400, "bad_value", "password must be a string and"
                             " subscription {active: bool}")
        scopes = body.get("scopes", ["flattr", "thing", "email", "extendedread"])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise AdminError(400, "bad_value", "scopes must be a list of strings")
        try:
            user = self.ctx.store.create_user(username, password, registered_at=self.ctx.now(),
                                              subscription_active=active,
                                              email=f"{username}@example.com")
        except StoreError as exc:
            raise AdminError(409, "conflict", str(exc)) from exc
        token = self.ctx.store.mint_token(user.id, scopes, "admin", now=self.ctx.clock.now())
        return _json({"username": username, "token": token, "password": password,
                      "subscription": {"active": active}}, 201)

    async def set_subscription(self, request: web.Request) -> web.Response:
        """POST users/{username}/subscription {active, expires_in?}; pushes to open pages."""
        user = self._user(request.match_info["username"])
        body = await _body(request)
        active = body.get("active")
        if not isinstance(active, bool):
            raise AdminError(400, "bad_value", f"active must be a boolean, got {active!r}")
        expires_in = body.get("expires_in")
        expiry = None if expires_in is None else _float(expires_in, "expires_in", 0, 0, 1e9)
        pushed_to = self.ctx.push.open_count(user.id)
        updated = await self.ctx.set_subscription(user, active, expiry)
        return _json({"username": updated.username,
                      "subscription": {"active": updated.subscription_active},
                      "version": updated.subscription_version, "pushed_to": pushed_to})

    async def revoke(self, request: web.Request) -> web.Response:
        """POST tokens/revoke {token} or {username}: the next API call gets 401."""
        body = await _body(request)
        if isinstance(body.get("token"), str):
            count = self.ctx.store.revoke_token(body["token"])
            if count == 0 and self.ctx.store.token(body["token"]) is None:
                raise AdminError(404, "no_such_token", "token was never issued")
        elif isinstance(body.get("username"), str):
            count = self.ctx.store.revoke_user_tokens(self._user(body["username"]).id)
        else:
            raise AdminError(400, "bad_value", "give token or username")
        return _json({"revoked": count})

    async def script(self, request: web.Request) -> web.Response:
        """POST script {method, path, responses: [...], server?: api|site}; [] clears."""
        body = await _body(request)
        method, path = body.get("method"), body.get("path")
        server = body.get("server", "api")
        steps_raw = body.get("responses")
        if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
            raise AdminError(400, "bad_value", "method and an absolute path are required")
        if server not in ("api", "site", "files") or not isinstance(steps_raw, list):
            raise AdminError(400, "bad_value", "server must be api, site or files, responses"
                             " a list")
        try:
            steps = [parse_step(s) for s in steps_raw]
        except ScriptError as exc:
            raise AdminError(400, "bad_script", str(exc)) from exc
        self.ctx.journal.set_script(server, method, path, steps)
        return _json({"scripted": len(steps), "method": method.upper(), "path": path,
                      "server": server})

    async def journal(self, request: web.Request) -> web.Response:
        """GET journal?method&path&path_prefix&server&since: matching entries."""
        return _json({"entries": self.ctx.journal.select(**_filters(request.query))})

    async def journal_wait(self, request: web.Request) -> web.Response:
        """GET journal/wait?count&timeout&<filters>: long-poll until count entries match."""
        count = int(_float(request.query.get("count"), "count", 1, 1, 1e6))
        timeout = _float(request.query.get("timeout"), "timeout", 10, 0, MAX_WAIT)
        entries, timed_out = await self.ctx.journal.wait_for(
            count, timeout, **_filters(request.query)
        )
        return _json({"entries": entries, "timed_out": timed_out})

    async def create_app(self, request: web.Request) -> web.Response:
        """POST apps {client_id, client_secret, redirect_uri, name?}: register an OAuth client."""
        body = await _body(request)
        fields = [body.get(k) for k in ("client_id", "client_secret", "redirect_uri")]
        if not all(isinstance(f, str) and f for f in fields):
            raise AdminError(400, "bad_value", "client_id, client_secret, redirect_uri needed")
        try:
            app = self.ctx.store.create_app(str(fields[0]), str(fields[1]), str(fields[2]),
                                            str(body.get("name", fields[0])))
        except StoreError as exc:
            raise AdminError(409, "conflict", str(exc)) from exc
        return _json({"client_id": app.client_id, "redirect_uri": app.redirect_uri}, 201)

    async def create_partner(self, request: web.Request) -> web.Response:
        """POST partners {prefix, hook_url, client_id?, username?}: a community partner."""
        body = await _body(request)
        prefix, hook = body.get("prefix"), body.get("hook_url")
        if not isinstance(prefix, str) or not prefix or not isinstance(hook, str):
            raise AdminError(400, "bad_value", "prefix and hook_url are required")
        if not _is_loopback_url(hook):
            raise AdminError(400, "bad_value", f"hook_url must be on loopback, got {hook!r}")
        partner = self.ctx.store.set_partner(prefix, hook, body.get("client_id"),
                                             body.get("username"))
        return _json({"prefix": partner.prefix, "hook_url": partner.hook_url}, 201)

    async def webhooks(self, request: web.Request) -> web.Response:
        """GET webhooks?delivered&wait&timeout: attempts log, optionally waiting for N."""
        raw = request.query.get("delivered")
        delivered = None if raw is None else raw in ("1", "true")
        wait = int(_float(request.query.get("wait"), "wait", 0, 0, 1e6))
        timeout = _float(request.query.get("timeout"), "timeout", 10, 0, MAX_WAIT)
        if wait:
            attempts, timed_out = await self.ctx.webhooks.wait_for(wait, timeout, delivered)
        else:
            attempts, timed_out = self.ctx.webhooks.select(delivered), False
        return _json({"attempts": attempts, "timed_out": timed_out})

    async def config(self, request: web.Request) -> web.Response:
        """POST config {rate_limit?, webhook_retry_delays?, code_lifetime?, bulk_answer?}."""
        body = await _body(request)
        if "rate_limit" in body:
            self.ctx.limiter.limit = int(_float(body["rate_limit"], "rate_limit", 0, 0, 1e9))
        if "webhook_retry_delays" in body:
            delays = body["webhook_retry_delays"]
            if not isinstance(delays, list) or len(delays) > 20:
                raise AdminError(400, "bad_value", "webhook_retry_delays: list of <= 20 numbers")
            self.ctx.webhooks.retry_delays = tuple(
                _float(d, "delay", 0, 0, 86400) for d in delays
            )
        if "code_lifetime" in body:
            self.ctx.code_lifetime = _float(body["code_lifetime"], "code_lifetime", 60, 0, 86400)
        if "bulk_answer" in body:
            style = body["bulk_answer"]
            if style not in BULK_STYLES:
                raise AdminError(400, "bad_value", f"bulk_answer must be one of "
                                 f"{', '.join(BULK_STYLES)}, got {style!r}")
            self.ctx.bulk_answer = style
        return _json({"rate_limit": self.ctx.limiter.limit,
                      "webhook_retry_delays": list(self.ctx.webhooks.retry_delays),
                      "code_lifetime": self.ctx.code_lifetime,
                      "bulk_answer": self.ctx.bulk_answer})

    async def clock(self, request: web.Request) -> web.Response:
        """POST clock {advance: seconds}: move the server's clock forward."""
        body = await _body(request)
        now = self.ctx.clock.advance(_float(body.get("advance"), "advance", 0, 0, 1e9))
        return _json({"now": now, "offset": self.ctx.clock.offset})
