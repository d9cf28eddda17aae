"""The flattr.com pages: plain HTML from ``templates/base.html`` plus ``static/flattr.js``.

Every page carries a JSON config (``#flattr-config``): the API URL to use when
not loaded as ``https://flattr.com``, the push socket URL with a ticket, the
CSRF token, a page API token and the subscription state. Routing is by path
only (never by Host), so the pages work as ``https://flattr.com/...`` through
``--host-resolver-rules`` and as ``https://127.0.0.1:<port>/...``.
"""

from __future__ import annotations

import html
import json
import string
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp import web

from .api.oauth import token_handler
from .context import SiteContext
from .redirects import FRAME_DENY, safe_next, see_other
from .render import SITE_BASE
from .store import Session, Thing, parse_whole
from .urls import AUTO_SUBMIT_PATH, auto_submit_from_params

COOKIE = "flattr_session"
SCOPES = frozenset({"flattr", "thing", "email", "extendedread"})
EXTENSION_SCOPES = ("flattr",)
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
DEFAULT_HANDSHAKE_TIMEOUT_MS = 3000
# Pages that refuse framing (docs/fake-site.md, "Redirects and framing").
FRAME_DENIED_PAGES = frozenset({"login", "authorize", "oauth-ext", "settings", "subscription"})


def _read_package_file(*parts: str) -> str:
    return resources.files(__package__ or "fake_flattr").joinpath(*parts).read_text("utf-8")


BASE = string.Template(_read_package_file("templates", "base.html"))
e = html.escape


def handshake_timeout(request: web.Request) -> dict[str, Any]:
    """Page config for ``?timeout=ms`` (1-60000): how long the handshake waits for
    each answer of the extension."""
    timeout = parse_whole(request.query.get("timeout", ""))
    if timeout is not None and 0 < timeout <= 60000:
        return {"handshakeTimeout": timeout}
    return {}


class Pages:
    """Handlers for the flattr.com pages."""

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """aiohttp route table of the site."""
        return [
            web.get("/", self.home),
            web.get("/login", self.login_page),
            web.post("/login", self.login),
            web.get("/logout", self.logout),
            web.post("/logout", self.logout),
            web.get("/oauth/ext", self.oauth_ext),
            web.post("/oauth/ext/token", self.ext_token),
            web.get("/oauth/authorize", self.authorize_page),
            web.post("/oauth/authorize", self.authorize),
            web.post("/oauth/token", token_handler(self.ctx)),
            web.get("/settings", self.settings),
            web.post("/settings/subscription", self.settings_subscription),
            web.get("/flattrs", self.flattrs),
            web.get("/thing/{id}", self.thing_page),
            web.get("/thing/{id}/{slug}", self.thing_page),
            web.get("/profile/{username}", self.profile),
            web.get(AUTO_SUBMIT_PATH, self.submit_auto),
            web.get("/claim/{id}", self.claim),
            web.get("/claim/{id}/owner/{email}", self.claim),
            web.get("/static/{name}", self.static),
        ]

    # -- helpers -------------------------------------------------------------

    def session(self, request: web.Request) -> Session | None:
        """The logged-in session of this request, or None."""
        sid = request.cookies.get(COOKIE)
        return self.ctx.store.session(sid) if sid else None

    def _require(self, request: web.Request) -> Session:
        session = self.session(request)
        if session is None:
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
        return session

    async def _json_post(self, request: web.Request) -> tuple[Session, object] | web.Response:
        """A same-origin JSON POST from a signed-in page: (session, body or None),
        or the 401 / 403 answer when the session or the CSRF header is missing."""
        session = self.session(request)
        if session is None:
            return web.json_response({"error": "unauthorized"}, status=401)
        if not self._csrf_ok(request, session, {}):
            return web.json_response({"error": "bad_csrf"}, status=403)
        try:
            body = await request.json()
        except ValueError:
            body = None
        return session, body

    def _csrf_ok(self, request: web.Request, session: Session, form: dict[str, str]) -> bool:
        given = request.headers.get("X-CSRF-Token") or form.get("csrf", "")
        return bool(given) and given == session.csrf

    def render(self, request: web.Request, page: str, title: str, body: str, *,
               status: int = 200, extra: dict[str, Any] | None = None) -> web.Response:
        """A full page with the navigation and the page config."""
        session = self.session(request)
        config: dict[str, Any] = {"api": self.ctx.endpoints.api, "push": None, "csrf": None,
                                  "user": None, "token": None, "subscription": None,
                                  "handshakeTimeout": DEFAULT_HANDSHAKE_TIMEOUT_MS}
        if session is not None:
            user = session.user
            config.update({
                "push": f"{self.ctx.endpoints.push}?ticket={self.ctx.push.ticket(user.id)}",
                "csrf": session.csrf, "user": user.username, "token": session.web_token,
                "subscription": {"active": user.subscription_active,
                                 "version": user.subscription_version},
            })
            nav = (f'<a href="/flattrs">My flattrs</a><a href="/settings">Settings</a>'
                   f'<a href="/profile/{e(user.username)}">{e(user.username)}</a>'
                   f'<form method="post" action="/logout"><input type="hidden" name="csrf"'
                   f' value="{e(session.csrf)}"><button>Log out</button></form>')
        else:
            nav = '<a href="/login">Log in</a>'
        config.update(extra or {})
        text = BASE.substitute(
            title=e(title), page=e(page), nav=nav, body=body,
            config=json.dumps(config).replace("</", "<\\/"),
        )
        headers = {"Cache-Control": "no-store"}
        if page in FRAME_DENIED_PAGES:
            headers.update(FRAME_DENY)
        return web.Response(status=status, text=text, content_type="text/html",
                            headers=headers)

    # -- pages -----------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        """Home: who is logged in, and the extension status (in the header)."""
        session = self.session(request)
        if session is None:
            body = '<p>Welcome to Flattr. <a href="/login">Log in</a> to flattr things.</p>'
        else:
            body = (f'<p>Logged in as <strong id="username">{e(session.user.username)}</strong>.'
                    '</p><p class="status subscription-status" role="status">...</p>'
                    '<p><a href="/oauth/ext">Connect the browser extension</a></p>')
        return self.render(request, "home", "Flattr", body)

    async def login_page(self, request: web.Request, error: str = "") -> web.Response:
        """The login form."""
        nxt = safe_next(request.query.get("next"))
        err = f'<p class="error" id="login-error">{e(error)}</p>' if error else ""
        body = (f'{err}<form method="post" action="/login" id="login-form">'
                f'<input type="hidden" name="next" value="{e(nxt)}">'
                '<p><label>Username <input name="username" id="username"'
                ' autocomplete="username" autofocus></label></p>'
                '<p><label>Password <input name="password" id="password" type="password"'
                ' autocomplete="current-password">'
                '</label></p><p><button type="submit" id="login-button">Log in</button></p>'
                '</form>')
        return self.render(request, "login", "Log in", body, status=401 if error else 200)

    async def login(self, request: web.Request) -> web.Response:
        """POST /login: check the password, set the session cookie, go to ``next``."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        user = self.ctx.store.check_login(form.get("username", ""), form.get("password", ""))
        if user is None:
            return await self.login_page(request, "Wrong username or password.")
        session = self.ctx.store.create_session(user.id, self.ctx.clock.now())
        resp = see_other(safe_next(form.get("next")))
        resp.set_cookie(COOKIE, session.sid, secure=True, httponly=True, samesite="Lax",
                        path="/")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        """Log out (POST with CSRF from the pages; GET kept for scripts)."""
        session = self.session(request)
        if session is not None:
            if request.method == "POST":
                form = {k: str(v) for k, v in (await request.post()).items()}
                if not self._csrf_ok(request, session, form):
                    raise web.HTTPForbidden(text="bad CSRF token")
            self.ctx.store.delete_session(session.sid)
            self.ctx.push.forget_user(session.user.id)
        resp = web.HTTPSeeOther("/")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    async def oauth_ext(self, request: web.Request) -> web.Response:
        """The sign-in page the extension opens: runs the handshake of document 000."""
        self._require(request)
        extra = handshake_timeout(request)
        body = ('<p id="handshake-status" class="status" data-state="starting" role="status">'
                'Starting...</p>'
                '<p class="status subscription-status" role="status">...</p>'
                '<p><button data-action="handshake" id="retry">Try again</button></p>')
        return self.render(request, "oauth-ext", "Sign in the Flattr extension", body,
                           extra=extra)

    async def ext_token(self, request: web.Request) -> web.Response:
        """POST /oauth/ext/token {id, build, version}: mint a token bound to the extension.

        Same-origin only (session cookie + CSRF header). An earlier token of the
        same user for the same extension id is revoked.
        """
        checked = await self._json_post(request)
        if isinstance(checked, web.Response):
            return checked
        session, body = checked
        ext_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(ext_id, str) or not 1 <= len(ext_id) <= 128:
            return web.json_response(
                {"error": "invalid_request", "error_description":
                 "id must be the extension id, a string of 1 to 128 characters"}, status=400)
        user = session.user
        self.ctx.store.revoke_user_tokens(user.id, kind="extension", extension_id=ext_id)
        token = self.ctx.store.mint_token(user.id, EXTENSION_SCOPES, "extension",
                                          now=self.ctx.clock.now(), extension_id=ext_id)
        fresh = self.ctx.store.user_by_id(user.id)
        assert fresh is not None
        return web.json_response({
            "accessToken": token, "subscription": {"active": fresh.subscription_active},
            "version": fresh.subscription_version,
        }, headers={"Cache-Control": "no-store"})

    async def settings(self, request: web.Request) -> web.Response:
        """Start or stop the subscription; the page dispatches flattr-subscription."""
        self._require(request)
        body = ('<p id="subscription-status" class="status subscription-status" role="status">'
                '...</p>'
                '<p><button data-action="subscribe" id="subscribe">Start subscription</button> '
                '<button data-action="unsubscribe" id="unsubscribe">Stop subscription</button>'
                '</p><p id="settings-result" role="alert"></p>'
                '<p><button data-action="handshake" id="connect">Connect the extension</button>'
                '</p><p id="handshake-status" class="status" data-state="idle" role="status"></p>')
        return self.render(request, "settings", "Settings", body,
                           extra=handshake_timeout(request))

    async def settings_subscription(self, request: web.Request) -> web.Response:
        """POST /settings/subscription {active}: change it server-side and push it."""
        checked = await self._json_post(request)
        if isinstance(checked, web.Response):
            return checked
        session, body = checked
        active = body.get("active") if isinstance(body, dict) else None
        if not isinstance(active, bool):
            return web.json_response({"error": "invalid_request",
                                      "error_description": "active must be a boolean"},
                                     status=400)
        user = await self.ctx.set_subscription(session.user, active)
        return web.json_response({"subscription": {"active": user.subscription_active},
                                  "version": user.subscription_version})

    async def flattrs(self, request: web.Request) -> web.Response:
        """The logged-in user's flattrs, newest first."""
        session = self._require(request)
        store = self.ctx.store
        rows = []
        for f in store.flattrs(user_id=session.user.id):
            thing = store.thing(f.thing_id)
            if thing is None:
                continue
            rows.append(f'<tr class="flattr" data-thing="{thing.id}"><td>'
                        f'<a href="/thing/{thing.id}">{e(thing.title)}</a></td>'
                        f'<td class="url">{e(thing.url)}</td><td>{f.created_at}</td></tr>')
        table = ("<table id=\"flattrs\"><tr><th>Thing</th><th>URL</th><th>When</th></tr>"
                 + "".join(rows) + "</table>") if rows else '<p id="flattrs">No flattrs yet.</p>'
        return self.render(request, "flattrs", "My flattrs", table)

    def _thing_html(self, thing: Thing) -> str:
        store = self.ctx.store
        owner = store.user_by_id(thing.owner_id) if thing.owner_id is not None else None
        who = (f'<a href="/profile/{e(owner.username)}">{e(owner.username)}</a>' if owner
               else f"unclaimed ({e(thing.owner_identifier or 'no owner yet')})")
        return (f'<p>URL: <a id="thing-url" href="{e(thing.url)}">{e(thing.url)}</a></p>'
                f'<p>Owner: {who}</p><p>{e(thing.description)}</p>'
                f'<p>Flattrs: <span id="flattr-count">{store.flattr_count(thing.id)}</span></p>')

    def _thing(self, raw: str) -> Thing | None:
        """The thing a URL's id names, or None (not an id, or no such thing)."""
        thing_id = parse_whole(raw)
        return None if thing_id is None else self.ctx.store.thing(thing_id)

    async def thing_page(self, request: web.Request) -> web.Response:
        """A thing, with a Flattr button that calls the API with the page token."""
        raw = request.match_info["id"]
        thing = self._thing(raw)
        if thing is None:
            return self.render(request, "thing", "Thing not found",
                               "<p>No such thing.</p>", status=404)
        button = (f'<p><button data-action="flattr-thing" data-thing="{thing.id}" id="flattr">'
                  'Flattr</button></p><p id="flattr-result" class="status" role="status"></p>'
                  if self.session(request) else '<p><a href="/login">Log in</a> to flattr.</p>')
        return self.render(request, "thing", thing.title, self._thing_html(thing) + button)

    async def profile(self, request: web.Request) -> web.Response:
        """A user's public profile and things."""
        user = self.ctx.store.user_by_name(request.match_info["username"])
        if user is None:
            return self.render(request, "profile", "No such user", "<p>Not found.</p>",
                               status=404)
        things = "".join(f'<li><a href="/thing/{t.id}">{e(t.title)}</a></li>'
                         for t in self.ctx.store.things(owner_id=user.id) if not t.hidden)
        body = f"<p>{e(user.about)}</p><ul id=\"things\">{things}</ul>"
        return self.render(request, "profile", user.username, body)

    async def submit_auto(self, request: web.Request) -> web.Response:
        """/submit/auto (document 001): an existing thing redirects to its page; a new
        one gets a page offering to flattr it, which creates it through the API."""
        auto = auto_submit_from_params(parse_qs(request.rel_url.raw_query_string))
        if auto is None:
            return self.render(request, "submit", "Invalid auto-submit URL",
                               '<p class="error">The url parameter is missing or invalid.</p>',
                               status=400)
        thing = self.ctx.store.thing_by_url(auto.url)
        if thing is not None:
            raise web.HTTPFound(f"/thing/{thing.id}")
        if auto.user_id and self.ctx.store.user_by_name(auto.user_id) is None:
            return self.render(request, "submit", "Unknown owner",
                               f'<p class="error">No user {e(auto.user_id)}.</p>', status=404)
        full_url = f"{SITE_BASE}{AUTO_SUBMIT_PATH}?{request.rel_url.raw_query_string}"
        owner = e(auto.user_id or auto.owner or "nobody yet")
        button = (f'<p><button data-action="flattr-url" data-url="{e(full_url)}" id="flattr">'
                  'Flattr and create this thing</button></p>'
                  '<p id="flattr-result" class="status" role="status"></p>'
                  if self.session(request) else
                  f'<p><a href="/login?{e(urlencode({"next": request.path_qs}))}">Log in</a>'
                  ' to flattr.</p>')
        body = (f'<p>URL: <a id="thing-url" href="{e(auto.url)}">{e(auto.url)}</a></p>'
                f'<p>Owner: {owner}</p><p>{e(auto.description)}</p>'
                '<p>This thing is created when it gets its first flattr.</p>' + button)
        return self.render(request, "submit", auto.title, body)

    async def claim(self, request: web.Request) -> web.Response:
        """The claim page a partner's web hook links to (document 001, ``claim_url``)."""
        raw = request.match_info["id"]
        thing = self._thing(raw)
        if thing is None:
            return self.render(request, "claim", "Nothing to claim", "<p>Not found.</p>",
                               status=404)
        body = (self._thing_html(thing) + "<p>To claim this thing, sign in and ask the"
                " partner site to verify your identifier"
                f" <code>{e(thing.owner_identifier or '')}</code>.</p>")
        return self.render(request, "claim", f"Claim: {thing.title}", body)

    async def authorize_page(self, request: web.Request) -> web.StreamResponse:
        """GET /oauth/authorize: validate, then ask the logged-in user to allow."""
        params = dict(request.query)
        checked = self._check_authorize(params)
        if isinstance(checked, web.StreamResponse):
            return checked
        session = self._require(request)
        app_name, scopes = checked
        hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
                         for k, v in params.items())
        body = (f"<p><strong>{e(app_name)}</strong> asks for: "
                f"{e(', '.join(scopes) or 'basic access')}.</p>"
                f'<form method="post" action="/oauth/authorize">{hidden}'
                f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'
                '<button name="decision" value="allow" id="allow">Allow</button> '
                '<button name="decision" value="deny" id="deny">Deny</button></form>')
        return self.render(request, "authorize", "Authorize application", body)

    def _check_authorize(self, params: dict[str, str]) -> tuple[str, list[str]] | web.Response:
        app = self.ctx.store.app(params.get("client_id", ""))
        if app is None:
            return web.Response(status=400, text="unknown client_id")
        redirect = params.get("redirect_uri") or app.redirect_uri
        if redirect != app.redirect_uri:
            return web.Response(status=400, text="redirect_uri does not match the registered"
                                f" one ({app.redirect_uri})")
        if params.get("response_type") not in ("code", "token"):
            return self._redirect_error(redirect, params, "unsupported_response_type")
        scopes = params.get("scope", "").split()
        if any(s not in SCOPES for s in scopes):
            return self._redirect_error(redirect, params, "invalid_scope")
        return app.name, scopes

    @staticmethod
    def _redirect_error(redirect: str, params: dict[str, str], error: str) -> web.Response:
        query = {"error": error}
        if "state" in params:
            query["state"] = params["state"]
        sep = "&" if urlsplit(redirect).query else "?"
        return web.HTTPFound(f"{redirect}{sep}{urlencode(query)}")

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        """POST /oauth/authorize: the user's decision; redirects with a code (or token)."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        session = self._require(request)
        if not self._csrf_ok(request, session, form):
            raise web.HTTPForbidden(text="bad CSRF token")
        checked = self._check_authorize(form)
        if isinstance(checked, web.StreamResponse):
            return checked
        _name, scopes = checked
        app = self.ctx.store.app(form["client_id"])
        assert app is not None
        redirect = form.get("redirect_uri") or app.redirect_uri
        if form.get("decision") != "allow":
            return self._redirect_error(redirect, form, "access_denied")
        state = {"state": form["state"]} if "state" in form else {}
        if form["response_type"] == "token":
            token = self.ctx.store.mint_token(session.user.id, scopes, "oauth",
                                              now=self.ctx.clock.now(), client_id=app.client_id)
            frag = urlencode({"access_token": token, "token_type": "bearer", **state})
            return web.HTTPFound(f"{redirect}#{frag}")
        code = self.ctx.store.create_code(app.client_id, session.user.id, redirect, scopes,
                                          self.ctx.clock.now() + self.ctx.code_lifetime)
        sep = "&" if urlsplit(redirect).query else "?"
        return web.HTTPFound(f"{redirect}{sep}{urlencode({'code': code, **state})}")

    async def static(self, request: web.Request) -> web.Response:
        """The page script and style sheet (package data)."""
        name = request.match_info["name"]
        suffix = name[name.rfind("."):] if "." in name else ""
        if "/" in name or suffix not in STATIC_TYPES:
            raise web.HTTPNotFound()
        try:
            text = _read_package_file("static", name)
        except FileNotFoundError as exc:
            raise web.HTTPNotFound() from exc
        return web.Response(text=text, content_type=STATIC_TYPES[suffix],
                            headers={"Cache-Control": "no-cache"})

