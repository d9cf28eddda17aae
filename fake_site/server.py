"""Assembles and runs the listeners: site (pages), API (REST v2 + admin), push, and
files (files.flattr.com, :mod:`fake_flattr.files`).

All of them listen on 127.0.0.1 only, over TLS with the same leaf certificate.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from . import FakeSiteError
from .admin import Admin, AdminError
from .api import bulk, resources
from .api.core import API_PREFIX, JSON_TYPE, Api, make_response, not_found
from .api.oauth import token_handler
from .button import ButtonViews
from .certs import ensure_certs
from .context import SiteContext
from .extension_pages import ExtensionPages
from .files import admin_routes as files_admin_routes
from .files import files_app_routes
from .journal import middleware as journal_middleware
from .pages import Pages
from .store import Store

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# How long stopping waits for requests in progress before cancelling them.
SHUTDOWN_TIMEOUT = 1.0


class ServerError(FakeSiteError):
    """The server could not start (port in use, unusable data directory...)."""


def bind(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:port (0 = any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def build_api_app(ctx: SiteContext) -> web.Application:
    """The api.flattr.com application: REST v2, /oauth/token and /__admin/."""
    admin = Admin(ctx)
    app = web.Application(middlewares=[admin.guard, journal_middleware(ctx.journal, "api")],
                          client_max_size=8 * 1024 * 1024)
    api = Api(ctx, bulk.routes() + resources.routes())

    async def other(request: web.Request) -> web.StreamResponse:
        body = not_found().body()
        return make_response(404, body, content_type=JSON_TYPE, headers={}, callback=None)

    app.add_routes(admin.routes())
    app.add_routes(ButtonViews(ctx).api_routes())
    app.add_routes(files_admin_routes(ctx.domains, AdminError))
    app.router.add_route("POST", "/oauth/token", token_handler(ctx))
    app.router.add_route("*", API_PREFIX + "{tail:(/.*)?}", api.handle)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


def build_site_app(ctx: SiteContext) -> web.Application:
    """The flattr.com application: pages, static files, OAuth authorize/token."""
    app = web.Application(middlewares=[journal_middleware(ctx.journal, "site")])
    pages = Pages(ctx)
    app.add_routes(pages.routes())
    app.add_routes(ExtensionPages(pages).routes())
    app.add_routes(ButtonViews(ctx).site_routes())
    return app


def build_api_http_app(ctx: SiteContext) -> web.Application:
    """http://api.flattr.com: the button loader and iframes only (api-v2/button.md
    documents the loader on http too); everything else is 404."""
    app = web.Application(middlewares=[journal_middleware(ctx.journal, "api")])
    app.add_routes(ButtonViews(ctx).api_routes())
    return app


def build_files_app(ctx: SiteContext) -> web.Application:
    """The files.flattr.com application: the domains list."""
    app = web.Application(middlewares=[journal_middleware(ctx.journal, "files")])
    app.add_routes(files_app_routes(ctx.domains))
    return app


class FakeSite:
    """One running fake flattr.com; ``start`` then ``stop``."""

    def __init__(self, *, data_dir: Path | None, seed: bool, port: int = 0,
                 api_port: int = 0, push_port: int = 0, api_http_port: int = 0,
                 files_port: int = 0) -> None:
        self.data_dir = data_dir
        self.seed = seed
        self.ports = (port, api_port, push_port, files_port)
        self.api_http_port = api_http_port
        self._temp: Path | None = None
        self._runners: list[web.AppRunner] = []
        self.ctx: SiteContext | None = None

    async def start(self) -> dict[str, str]:
        """Bind, serve, and return the ready line's fields."""
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            cert_dir = self.data_dir / "certs"
            store = Store(self.data_dir / "state.sqlite3")
        else:
            self._temp = Path(tempfile.mkdtemp(prefix="fake-flattr-"))
            cert_dir = self._temp
            store = Store(None)
        certs = ensure_certs(cert_dir)
        ctx = SiteContext(store=store, certs=certs, seeded=self.seed)
        self.ctx = ctx
        socks = [bind(p) for p in self.ports]
        http_sock = bind(self.api_http_port)
        urls = [f"https://{HOST}:{s.getsockname()[1]}" for s in socks]
        ctx.endpoints.site, ctx.endpoints.api = urls[0], urls[1]
        ctx.endpoints.files = urls[3]
        tls = certs.server_context()
        for app, sock in ((build_site_app(ctx), socks[0]), (build_api_app(ctx), socks[1]),
                          (build_files_app(ctx), socks[3])):
            runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                   shutdown_timeout=SHUTDOWN_TIMEOUT)
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=tls).start()
            self._runners.append(runner)
        ctx.endpoints.api_http = f"http://{HOST}:{http_sock.getsockname()[1]}"
        runner = web.AppRunner(build_api_http_app(ctx), access_log=None,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        await web.SockSite(runner, http_sock).start()
        self._runners.append(runner)
        origins = ["https://flattr.com", urls[0], urls[0].replace(HOST, "localhost")]
        await ctx.push.start(socks[2], tls, origins)
        ctx.endpoints.push = ctx.push.url
        return {"site": urls[0], "api": urls[1], "ca": str(certs.ca), "spki": certs.spki,
                "api_http": ctx.endpoints.api_http, "files": urls[3]}

    async def stop(self) -> None:
        """Stop serving, close the database, remove temporary files."""
        if self.ctx is not None:
            await self.ctx.push.stop()
            await self.ctx.webhooks.close()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self.ctx is not None:
            self.ctx.store.close()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        """Endpoints for logs."""
        return {} if self.ctx is None else vars(self.ctx.endpoints)
