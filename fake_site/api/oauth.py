"""OAuth 2 token endpoint (document 002, "Request an access token").

``POST /oauth/token`` with HTTP Basic ``client_id:client_secret`` and a JSON or
form body ``{code, grant_type: "authorization_code", redirect_uri}``. Codes come
from ``/oauth/authorize`` on the site (:mod:`fake_flattr.pages`), are single-use
and expire after ``SiteContext.code_lifetime`` seconds. A replayed code also
revokes the tokens issued for it (RFC 6749 section 4.1.2). Served on both the
site (where document 002 puts it) and the API port.

Two choices RFC 6749 leaves to the server (docs/fake-site.md, "OAuth 2"):
- a request refused for a wrong ``redirect_uri`` or another client's code does
  not use the code up: the client may retry correctly until it expires;
- HTTP Basic together with ``client_secret`` in the body is two authentication
  methods in one request (section 2.3): ``400 invalid_request``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from ..context import SiteContext
from .core import CORS_HEADERS, ERROR_URI, JSON_TYPE

TOKEN_HEADERS = {
    # Exactly as document 002's example response.
    "Content-Type": "application/json; charset=utf-8",
    "Expires": "Thu, 19 Nov 1981 08:52:00 GMT",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


def _error(status: int, error: str, description: str,
           extra: dict[str, str] | None = None) -> web.Response:
    headers = {"Content-Type": JSON_TYPE, "Cache-Control": "no-store", **CORS_HEADERS}
    headers.update(extra or {})
    body = {"error": error, "error_description": description, "error_uri": ERROR_URI}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


async def _fields(request: web.Request) -> dict[str, Any] | None:
    raw = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def token_handler(ctx: SiteContext) -> Any:
    """The aiohttp handler for ``POST /oauth/token``."""

    def _replayed(code: str) -> web.Response:
        ctx.store.revoke_code_tokens(code)
        return _error(400, "invalid_grant", "authorization code already used; its tokens"
                      " are revoked")

    async def token(request: web.Request) -> web.Response:
        creds = _basic(request)
        fields = await _fields(request)
        if creds is not None and fields is not None and "client_secret" in fields:
            return _error(400, "invalid_request", "more than one client authentication method:"
                          " HTTP Basic and client_secret in the body (RFC 6749 section 2.3);"
                          " use HTTP Basic only")
        app = ctx.store.app(creds[0]) if creds else None
        if creds is None or app is None or app.client_secret != creds[1]:
            return _error(401, "invalid_client", "Client authentication failed (HTTP Basic"
                          " client_id:client_secret)", {"WWW-Authenticate": 'Basic realm="flattr"'})
        if fields is None:
            return _error(400, "invalid_request", "body must be a JSON object or a form")
        if fields.get("grant_type") != "authorization_code":
            grant = fields.get("grant_type")
            return _error(400, "unsupported_grant_type",
                          f"grant_type must be authorization_code, got {grant!r}")
        code = fields.get("code")
        if not isinstance(code, str) or not code:
            return _error(400, "invalid_request", "code is required")
        # Every check runs on the code as it is; only a request that passes them all
        # uses it up (a refused one leaves it for a correct retry).
        row = ctx.store.peek_code(code)
        if row is None or row["client_id"] != app.client_id:
            return _error(400, "invalid_grant", "unknown authorization code")
        if row["used"]:
            return _replayed(code)
        if row["expires_at"] < ctx.clock.now():
            return _error(400, "invalid_grant", f"authorization code expired (lifetime"
                          f" {ctx.code_lifetime:g} s)")
        if fields.get("redirect_uri") != row["redirect_uri"]:
            return _error(400, "invalid_grant", "redirect_uri does not match the authorization"
                          " request; the code stays valid for a retry with the same"
                          " redirect_uri")
        before = ctx.store.use_code(code)
        if before is None or before["used"]:  # another request used it meanwhile
            return _replayed(code)
        access = ctx.store.mint_token(
            int(row["user_id"]), str(row["scopes"]).split(), "oauth", now=ctx.clock.now(),
            client_id=app.client_id, code=code,
        )
        body = {"access_token": access, "token_type": "bearer"}
        return web.Response(body=json.dumps(body).encode(),
                            headers={**TOKEN_HEADERS, **CORS_HEADERS})

    return token
