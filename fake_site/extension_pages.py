"""flattr.com pages the original Flattr extension links to, and the handshake's
failure reports.

The original extension (flattr/flattr-extension) opens
``/settings/account/subscription`` ("Choose subscription" in its popup),
``/dashboard/contributor`` ("Flattr dashboard") and ``/privacy/consent`` (its
options page); docs/fake-site.md lists every URL it uses and what the fake
answers. ``POST /handshake/failure`` is where the page script reports a
handshake that ended without success (an unreadable or malformed detail, no
answer in time), so the admin journal holds it for tests to wait on.
"""

from __future__ import annotations

import html
import json
import logging

from aiohttp import web

from .pages import Pages

log = logging.getLogger(__name__)
e = html.escape

FAILURE_PATH = "/handshake/failure"
#: Final handshake states that are not success (static/flattr.js).
FAILURE_STATES = frozenset({"no-extension", "unreadable-detail", "malformed-detail",
                            "failed", "unconfirmed"})
MAX_REPORT_BYTES = 8192


class ExtensionPages:
    """Handlers for the pages above, rendered with the site's :class:`Pages`."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def routes(self) -> list[web.RouteDef]:
        """aiohttp route table."""
        return [
            web.get("/settings/account/subscription", self.subscription),
            web.get("/dashboard/contributor", self.dashboard),
            web.get("/privacy/consent", self.consent),
            web.post(FAILURE_PATH, self.handshake_failure),
        ]

    async def subscription(self, request: web.Request) -> web.Response:
        """The subscription page: state, and Start / Stop (``POST /settings/subscription``,
        pushed to open pages and dispatched as ``flattr-subscription`` like /settings)."""
        session = self.pages._require(request)
        user = session.user
        body = ('<p>Your Flattr subscription turns the flattrs you give into money for'
                ' creators. Without an active subscription, flattrs are recorded but not'
                ' paid out.</p>'
                f'<p id="subscription-status" class="status subscription-status"'
                f' data-state="{"active" if user.subscription_active else "inactive"}">'
                f'{"Subscription active" if user.subscription_active else "Subscription inactive"}'
                '</p>'
                '<p><button data-action="subscribe" id="subscribe">Start subscription</button> '
                '<button data-action="unsubscribe" id="unsubscribe">Stop subscription</button>'
                '</p><p id="settings-result" class="status"></p>'
                '<p><a href="/settings">All settings</a></p>')
        return self.pages.render(request, "subscription", "Subscription", body)

    async def dashboard(self, request: web.Request) -> web.Response:
        """The contributor dashboard: how many flattrs the user gave, linking to them."""
        session = self.pages._require(request)
        count = len(self.pages.ctx.store.flattrs(user_id=session.user.id))
        body = (f'<p>You have given <strong id="flattr-total">{count}</strong>'
                f' flattr{"" if count == 1 else "s"}.</p>'
                '<p class="status subscription-status">...</p>'
                '<p><a href="/flattrs">See your flattrs</a> &middot;'
                ' <a href="/settings/account/subscription">Subscription</a></p>')
        return self.pages.render(request, "dashboard", "Dashboard", body)

    async def consent(self, request: web.Request) -> web.Response:
        """The data-collection consent text the original's options page links to."""
        body = ('<p id="consent">This simulated flattr.com collects nothing. The original'
                ' extension could send anonymised usage statistics to Flattr when its user'
                ' opted in; no such data is received here.</p>')
        return self.pages.render(request, "consent", "Privacy: data collection consent", body)

    async def handshake_failure(self, request: web.Request) -> web.Response:
        """``POST /handshake/failure {page, state, message, advice, timeoutMs}``: 204.

        The request itself is the record (the journal keeps it); it is also logged.
        Bad reports get 400 with the reason, so a page-script bug is visible too.
        """
        raw = await request.read()
        if len(raw) > MAX_REPORT_BYTES:
            return _bad(f"report is {len(raw)} bytes, the maximum is {MAX_REPORT_BYTES}")
        try:
            report = json.loads(raw)
        except ValueError:
            return _bad("report must be a JSON object")
        if not isinstance(report, dict):
            return _bad("report must be a JSON object")
        state = report.get("state")
        if state not in FAILURE_STATES:
            return _bad(f"state must be one of {sorted(FAILURE_STATES)}, got {state!r}")
        if not isinstance(report.get("message"), str):
            return _bad("message must be a string")
        log.info("handshake failed on page %r: %s: %s", report.get("page"), state,
                 report["message"])
        return web.Response(status=204)


def _bad(description: str) -> web.Response:
    return web.json_response({"error": "invalid_request", "error_description": description},
                             status=400)
