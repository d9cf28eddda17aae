"""The running fake site's shared state and the operations both servers use.

One :class:`SiteContext` is built at start-up and handed to the site, the API,
the admin API and the push server. Domain rules that more than one place needs
(flattring, subscription changes with their live push, partner web hooks) live
here so the pages, the REST API and the bulk endpoint behave identically.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from .certs import CertFiles
from .clock import Clock
from .files import DomainsFile
from .journal import Journal
from .push import PushHub
from .ratelimit import DEFAULT_LIMIT, RateLimiter
from .seed import seed
from .store import Store, Thing, User
from .urls import AutoSubmit, is_flattrable, parse_auto_submit
from .webhooks import DEFAULT_RETRY_DELAYS, WebhookSender

FlattrOutcome = Literal["ok", "flattr_once", "flattr_owner"]

# An authorization code is valid this long (seconds); RFC 6749 recommends <= 10 min.
DEFAULT_CODE_LIFETIME = 60.0


class UnknownOwner(Exception):
    """An auto-submit URL names a ``user_id`` that has no account."""


@dataclass
class Endpoints:
    """Where the servers listen (filled in once the sockets are bound)."""

    site: str = ""
    api: str = ""
    push: str = ""
    api_http: str = ""  # plain-HTTP API port: the button loader and iframes only
    files: str = ""


@dataclass
class SiteContext:
    """Everything a request handler may need."""

    store: Store
    certs: CertFiles
    seeded: bool
    clock: Clock = field(default_factory=Clock)
    endpoints: Endpoints = field(default_factory=Endpoints)
    code_lifetime: float = DEFAULT_CODE_LIFETIME
    #: How ``POST /rest/v2/flattr/bulk`` answers a success (``api/bulk.py``, STYLES).
    bulk_answer: str = "documented"

    def __post_init__(self) -> None:
        self.journal = Journal(self.clock.now)
        self.limiter = RateLimiter(self.clock.now)
        self.webhooks = WebhookSender(self.clock.now)
        self.push = PushHub(self._push_state)
        self.domains = DomainsFile(self.clock.now)
        self._expiry: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        if self.seeded and self.store.is_empty():
            seed(self.store)

    def now(self) -> int:
        """Current Unix time in whole seconds."""
        return int(self.clock.now())

    def _push_state(self, user_id: int) -> tuple[bool, int] | None:
        user = self.store.user_by_id(user_id)
        return None if user is None else (user.subscription_active, user.subscription_version)

    # -- admin reset -------------------------------------------------------

    def reset(self, *, seeded: bool | None = None) -> None:
        """Back to the start-up state: empty (or seeded) store, empty journal and logs."""
        if seeded is not None:
            self.seeded = seeded
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        self.store.clear()
        self.journal.clear()
        self.limiter.clear()
        self.webhooks.clear()
        self.push.clear()
        self.clock.reset()
        self.domains.reset()
        self.code_lifetime = DEFAULT_CODE_LIFETIME
        self.bulk_answer = "documented"
        self.limiter.limit = DEFAULT_LIMIT
        self.webhooks.retry_delays = DEFAULT_RETRY_DELAYS
        if self.seeded:
            seed(self.store)

    # -- subscriptions -----------------------------------------------------

    async def set_subscription(self, user: User, active: bool,
                               expires_in: float | None = None) -> User:
        """Change the account's subscription and push it to the user's open pages.

        With ``expires_in`` (seconds, active only) the subscription turns itself
        off after that long, which is pushed the same way.
        """
        expires_at = self.clock.now() + expires_in if active and expires_in is not None else None
        updated = self.store.set_subscription(user.id, active, expires_at)
        old = self._expiry.pop(user.id, None)
        if old is not None:
            old.cancel()
        if expires_in is not None and active:
            loop = asyncio.get_running_loop()
            self._expiry[user.id] = loop.call_later(
                max(0.0, expires_in), self._start_expiry, user.id
            )
        await self.push.broadcast(user.id, updated.subscription_active,
                                  updated.subscription_version)
        return updated

    def _start_expiry(self, user_id: int) -> None:
        task = asyncio.ensure_future(self._expire(user_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, user_id: int) -> None:
        self._expiry.pop(user_id, None)
        user = self.store.user_by_id(user_id)
        if user is not None and user.subscription_active:
            await self.set_subscription(user, False)

    # -- things and flattrs --------------------------------------------------

    def thing_from_auto_submit(self, auto: AutoSubmit) -> Thing:
        """Find the thing for an auto-submit URL's ``url``, creating it if new.

        Raises UnknownOwner when ``user_id`` names no account.
        """
        existing = self.store.thing_by_url(auto.url)
        if existing is not None:
            return existing
        owner_id: int | None = None
        identifier: str | None = None
        if auto.user_id:
            owner = self.store.user_by_name(auto.user_id)
            if owner is None:
                raise UnknownOwner(auto.user_id)
            owner_id = owner.id
        elif auto.owner:
            identifier = auto.owner
            owner_id = self.store.identity_owner(auto.owner)
        return self.store.create_thing(
            auto.url, created_at=self.now(), owner_id=owner_id, owner_identifier=identifier,
            title=auto.title, description=auto.description, tags=auto.tags,
            language=auto.language, category=auto.category, hidden=auto.hidden,
        )

    def thing_for_url(self, url: str, *, create_plain: bool) -> Thing | None:
        """The thing a URL (plain or auto-submit) designates.

        Auto-submit URLs create their thing. A plain URL that is not yet a
        thing is created (unclaimed) only when ``create_plain``; otherwise None.
        Raises UnknownOwner (see :meth:`thing_from_auto_submit`).
        """
        auto = parse_auto_submit(url)
        if auto is not None:
            return self.thing_from_auto_submit(auto)
        thing = self.store.thing_by_url(url)
        if thing is None and create_plain and is_flattrable(url):
            thing = self.store.create_thing(url, created_at=self.now(), title=url)
        return thing

    def flattr(self, user: User, thing: Thing) -> FlattrOutcome:
        """Flattr ``thing`` as ``user`` and notify its partner if it is unclaimed."""
        if thing.owner_id == user.id:
            return "flattr_owner"
        if not self.store.add_flattr(user.id, thing.id, self.now()):
            return "flattr_once"
        if thing.owner_id is None and thing.owner_identifier:
            self._notify_partner(user, thing)
        return "ok"

    def _notify_partner(self, user: User, thing: Thing) -> None:
        assert thing.owner_identifier is not None
        partner = self.store.partner_for(thing.owner_identifier)
        if partner is None:
            return
        self.webhooks.send(partner.hook_url, {
            "_event": "pendingclickcreate",
            "thing_id": str(thing.id),
            "thing_owner_id": thing.owner_identifier,
            "thing_clicks_total": str(self.store.flattr_count(thing.id)),
            "flattrer_username": user.username,
            "claim_url": f"https://flattr.com/claim/{quote(str(thing.id))}",
        })
