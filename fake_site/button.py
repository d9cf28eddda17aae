"""Embedded Flattr buttons (api-v2/button.md, document 001 "Embedded buttons").

Three parts, all served by this module:

- the loader, ``/js/0.6/load.js`` on the API host (HTTPS, and plain HTTP on the
  API's HTTP port), which turns button definitions in a partner page into iframes;
- the button iframe, ``/button/view/?<definition>`` on the same host and scheme
  as the loader (or HTTPS with the loader's ``https=1``): the thing's flattr
  count and a Flattr button, or a specific error for an invalid definition;
- the connect window, ``https://flattr.com/button/connect?origin=<button origin>``
  on the site: a top-level page (so the flattr.com session cookie is sent, which
  a cross-site iframe never gets in today's browsers) that sends a login to
  Flattr if needed and then hands the button iframe a ``flattr``-scope token by
  ``postMessage`` to that origin only. The iframe then flattrs through the REST
  API (``POST /rest/v2/flattr`` with the definition's auto-submit URL), so the
  button gets exactly the API's rules and errors (docs/fake-site.md, "Partner
  integration").

:func:`parse_definition` is the pure check of a definition.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from . import FakeSiteError
from .catalog import CATEGORY_IDS, LANGUAGE_IDS
from .context import SiteContext
from .render import SITE_BASE
from .urls import AUTO_SUBMIT_PATH, is_flattrable

LOADER_PATH = "/js/0.6/load.js"
VIEW_PATH = "/button/view/"
CONNECT_PATH = "/button/connect"
CANONICAL_API_ORIGINS = ("https://api.flattr.com", "http://api.flattr.com")
SESSION_COOKIE = "flattr_session"  # the site's session cookie (pages.py sets it)
BUTTON_SCOPES = ("flattr",)
TITLE_MAX = 100
DESCRIPTION_MAX = 1000
# Supported non-Flattr owner identifiers (document 001, "Supported user identifiers").
OWNER_PATTERNS = (
    re.compile(r"email:[0-9a-f]{32}"),
    re.compile(r"twitter:user:id:[0-9]+"),
    re.compile(r"partner:[A-Za-z0-9_.-]+:[^\s:]+"),
)
OWNER_FORMS = "email:<md5 hex>, twitter:user:id:<number> or partner:<namespace>:<id>"
STYLES = ("default", "compact")
STATIC_TYPES = {"js": "text/javascript", "css": "text/css"}
_BR = re.compile(r"<br\s*/?>|<br\\>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
e = html.escape


class DefinitionError(FakeSiteError):
    """A button definition that cannot become a button; ``code`` names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Definition:
    """A checked button definition (the parameters of api-v2/button.md)."""

    url: str
    uid: str
    owner: str
    title: str
    description: str
    category: str
    language: str
    tags: tuple[str, ...]
    hidden: bool
    button: str
    popout: bool

    def auto_submit_url(self) -> str:
        """The auto-submit URL (api-v2/auto-submit.md) that creates this thing on its
        first flattr; ``owner`` for partner identifiers, ``user_id`` for Flattr users."""
        query: dict[str, str] = {"url": self.url}
        if self.owner:
            query["owner"] = self.owner
        elif self.uid:
            query["user_id"] = self.uid
        if self.title:
            query["title"] = self.title
        if self.description:
            query["description"] = self.description
        if self.language:
            query["language"] = self.language
        if self.category:
            query["category"] = self.category
        if self.tags:
            query["tags"] = ",".join(self.tags)
        if self.hidden:
            query["hidden"] = "1"
        return f"{SITE_BASE}{AUTO_SUBMIT_PATH}?{urlencode(query)}"


def clean_text(value: str) -> str:
    """Strip HTML; ``<br>`` becomes a newline (api-v2/button.md, ``description``)."""
    text = html.unescape(_TAG.sub("", _BR.sub("\n", value)))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(lines).strip()


def is_supported_owner(owner: str) -> bool:
    """Whether ``owner`` is one of the identifier forms document 001 lists."""
    return any(p.fullmatch(owner) for p in OWNER_PATTERNS)


def _flag(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = params.get(name, "").strip()
    if raw == "":
        return default
    if raw not in ("0", "1"):
        raise DefinitionError("invalid_definition", f"{name} must be 0 or 1, got {raw!r}")
    return raw == "1"


def parse_definition(params: Mapping[str, str]) -> Definition:
    """Check a definition's parameters; raises DefinitionError naming the bad one.

    Only the syntax is checked here; whether the owner exists is the server's
    business (:func:`check_owner`).
    """
    url = params.get("url", "").strip()
    if not url:
        raise DefinitionError("invalid_definition", "url is required: every button needs the"
                              " URL of the thing")
    if not is_flattrable(url):
        raise DefinitionError("invalid_definition", "url must be an absolute http:// or"
                              f" https:// URL, got {url[:200]!r}")
    uid = params.get("uid", "").strip()
    owner = params.get("owner", "").strip()
    if uid and owner:
        raise DefinitionError("invalid_definition", f"give uid or owner, not both (uid {uid!r},"
                              f" owner {owner!r})")
    if owner and not is_supported_owner(owner):
        raise DefinitionError("unsupported_owner", f"owner {owner[:200]!r} is not a supported"
                              f" identifier; use {OWNER_FORMS}")
    category = params.get("category", "").strip()
    if category and category not in CATEGORY_IDS:
        raise DefinitionError("invalid_definition", f"category {category[:100]!r} is not one of"
                              f" the available categories ({', '.join(sorted(CATEGORY_IDS))})")
    language = params.get("language", "").strip().replace("-", "_")
    if language and language not in LANGUAGE_IDS:
        raise DefinitionError("invalid_definition", f"language {language[:100]!r} is not one of"
                              " the available languages (GET /rest/v2/languages)")
    button = params.get("button", "").strip() or "default"
    if button not in STYLES:
        raise DefinitionError("invalid_definition", f"button must be compact or default, got"
                              f" {button[:100]!r}")
    title = clean_text(params.get("title", ""))
    if len(title) > TITLE_MAX:
        raise DefinitionError("invalid_definition", f"title is {len(title)} characters long;"
                              f" the maximum is {TITLE_MAX}")
    description = clean_text(params.get("description", ""))
    if len(description) > DESCRIPTION_MAX:
        raise DefinitionError("invalid_definition", f"description is {len(description)}"
                              f" characters long; the maximum is {DESCRIPTION_MAX}")
    tags = tuple(t.strip() for t in params.get("tags", "").split(",") if t.strip())
    return Definition(
        url=url, uid=uid, owner=owner, title=title, description=description,
        category=category, language=language, tags=tags,
        hidden=_flag(params, "hidden", False), button=button,
        popout=_flag(params, "popout", True),
    )


def _read_static(name: str) -> str:
    return resources.files(__package__ or "fake_flattr").joinpath("static", name).read_text(
        "utf-8")


def _static(name: str, *, cors: bool = False) -> web.Response:
    headers = {"Cache-Control": "no-cache"}
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    return web.Response(text=_read_static(name), content_type=STATIC_TYPES[name.rsplit(".")[-1]],
                        headers=headers)


# The button is made to be framed by any page; the connect window never is, and it
# must keep its opener (the button iframe), so no COOP isolation there.
FRAMEABLE = {"Content-Security-Policy": "frame-ancestors *"}
NOT_FRAMEABLE = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
                 "Cross-Origin-Opener-Policy": "unsafe-none"}


def _page(title: str, body: str, *, body_attrs: str, script: str, status: int = 200,
          headers: Mapping[str, str] = FRAMEABLE) -> web.Response:
    text = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><link rel=\"stylesheet\" href=\"/button/button.css\">"
            f"</head><body {body_attrs}>{body}<script src=\"{script}\"></script></body></html>")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={"Cache-Control": "no-store", **headers})


class ButtonViews:
    """Handlers of the loader, the button iframe and the connect window."""

    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx

    # -- API host (HTTPS and HTTP) ---------------------------------------------

    def api_routes(self) -> list[web.RouteDef]:
        """Routes for the API host, on both its HTTPS and HTTP ports."""
        return [
            web.get(LOADER_PATH, self.loader),
            web.get(VIEW_PATH, self.view),
            web.get(VIEW_PATH.rstrip("/"), self.view),
            web.get("/button/button.js", self.asset),
            web.get("/button/button.css", self.asset),
        ]

    def site_routes(self) -> list[web.RouteDef]:
        """Routes for flattr.com: the connect window and its script."""
        return [
            web.get(CONNECT_PATH, self.connect),
            web.get("/button/connect.js", self.asset),
            web.get("/button/button.css", self.asset),
        ]

    async def loader(self, request: web.Request) -> web.Response:
        """The loader script; its options come from its own query string."""
        return _static("load.js", cors=True)

    async def asset(self, request: web.Request) -> web.Response:
        """The button's and the connect window's script and style sheet."""
        return _static(request.path.rsplit("/", 1)[-1])

    def check_owner(self, definition: Definition) -> None:
        """A new thing needs an owner that can receive it: raises DefinitionError."""
        if definition.uid:
            if self.ctx.store.user_by_name(definition.uid) is None:
                raise DefinitionError("not_found", f"no Flattr user named {definition.uid!r}"
                                      " (uid) to own this thing")
        elif not definition.owner:
            raise DefinitionError("invalid_definition", "uid or owner is required: the url is"
                                  " not a thing yet, and auto-submit needs its owner")

    async def view(self, request: web.Request) -> web.Response:
        """The button iframe: count and Flattr button, or the definition's error."""
        params = {k: v for k, v in request.query.items()}
        style = params.get("button") if params.get("button") in STYLES else "default"
        try:
            definition = parse_definition(params)
            thing = self.ctx.store.thing_by_url(definition.url)
            if thing is None:
                self.check_owner(definition)
        except DefinitionError as error:
            body = ('<p id="error" role="alert"><strong>Flattr button error:</strong> '
                    f'<span id="error-text">{e(error.message)}</span></p>')
            return _page("Flattr button: error", body, script="/button/button.js",
                         body_attrs=f'class="{style}" data-state="error"'
                                    f' data-error="{e(error.code)}"')
        count = self.ctx.store.flattr_count(thing.id) if thing is not None else 0
        claimed = thing is not None and thing.owner_id is not None
        config = {"autoSubmit": definition.auto_submit_url(), "site": self.ctx.endpoints.site,
                  "api": self.ctx.endpoints.api, "thing": thing.id if thing else None}
        title = definition.title or (thing.title if thing else "") or definition.url
        popout = ""
        if definition.popout:
            owner_user = (self.ctx.store.user_by_id(thing.owner_id)
                          if thing is not None and thing.owner_id is not None else None)
            owner = (f"by {owner_user.username}" if owner_user else
                     f"by {definition.uid}" if definition.uid else "not claimed yet")
            popout = (f'<div id="popout" hidden><strong>{e(title)}</strong>'
                      f'<p>{e((definition.description or "")[:200])}</p>'
                      f'<p class="owner">{e(owner)}</p></div>')
        body = (f'<div id="button" data-config="{e(json.dumps(config))}">'
                f'<button id="flattr" type="button" aria-describedby="count">Flattr</button>'
                f'<span id="count" title="flattrs">{count}</span></div>'
                f'<p id="message" role="status"></p>{popout}')
        # "loading" until button.js has wired the click (it then sets "ready").
        attrs = (f'class="{definition.button}" data-state="loading" data-count="{count}"'
                 f' data-thing="{thing.id if thing else ""}"'
                 f' data-claimed="{str(claimed).lower()}"'
                 f' data-popout="{int(definition.popout)}"')
        return _page(f"Flattr button: {title}", body, body_attrs=attrs,
                     script="/button/button.js")

    # -- flattr.com ------------------------------------------------------------

    def button_origins(self) -> set[str]:
        """Origins a button iframe can have: the API's names on HTTPS and HTTP."""
        origins = set(CANONICAL_API_ORIGINS)
        for base in (self.ctx.endpoints.api, self.ctx.endpoints.api_http):
            if base:
                parts = urlsplit(base)
                origins.add(f"{parts.scheme}://{parts.netloc}")
                origins.add(f"{parts.scheme}://{parts.netloc}".replace("127.0.0.1", "localhost"))
        return origins

    async def connect(self, request: web.Request) -> web.Response:
        """The window a button opens: login if needed, then a token for the button.

        The token goes only to ``window.opener`` at ``origin``, which must be a
        button origin, so no other page can obtain it by opening this window.
        """
        origin = request.query.get("origin", "")
        if origin not in self.button_origins():
            body = ('<p id="error" role="alert">This window must be opened by a Flattr button;'
                    f' origin {e(origin[:200])!s} is not a button origin.</p>')
            return _page("Flattr", body, body_attrs='data-state="error"',
                         script="/button/connect.js", status=400, headers=NOT_FRAMEABLE)
        sid = request.cookies.get(SESSION_COOKIE)
        session = self.ctx.store.session(sid) if sid else None
        if session is None:
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
        token = self.ctx.store.mint_token(session.user.id, BUTTON_SCOPES, "button",
                                          now=self.ctx.clock.now())
        data = e(json.dumps({"token": token, "origin": origin,
                             "username": session.user.username}))
        body = (f'<p id="connect" data-connect="{data}">Signed in to Flattr as'
                f' <strong>{e(session.user.username)}</strong>. Returning to the button...</p>')
        return _page("Flattr", body, body_attrs='data-state="connecting"',
                     script="/button/connect.js", headers=NOT_FRAMEABLE)
