"""Authentication, subscription and queue pause: one explicit state machine.

This module is the only place that decides "signed in", "subscription active" and
"queue paused and why" (docs/architecture.md). :func:`transition` is pure: it maps
a snapshot and an event to the next snapshot, or raises :class:`TransitionError`
and changes nothing. :class:`StateStore` keeps the snapshot in the SQLite store.

Document 000 drives the rules: the page's ``flattr-token`` signs in (and may carry
the subscription), ``flattr-subscription`` sets it, a 401 from the API removes the
token, a 402 deactivates the subscription. A stored token that cannot be decrypted
signs out the same way a 401 does. A 403 ``rate_limit_exceeded`` (document
002) pauses delivery until the reset time.
"""

from __future__ import annotations

from enum import Enum

from flattr_host.core.errors import TransitionError
from flattr_host.core.values import Value
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3


class Auth(Enum):
    SIGNED_OUT = "signed_out"
    SIGNED_IN = "signed_in"


class Subscription(Enum):
    UNKNOWN = "unknown"  # nobody has told us yet: delivery is attempted, a 402 settles it
    ACTIVE = "active"
    INACTIVE = "inactive"


class Snapshot(Value):
    __slots__ = ("auth", "subscription", "rate_limited_until")
    _defaults = {"auth": Auth.SIGNED_OUT, "subscription": Subscription.UNKNOWN,  # noqa: RUF012
                 "rate_limited_until": None}
    auth: Auth
    subscription: Subscription
    rate_limited_until: float | None

    def paused(self, now: float) -> str | None:
        """Why delivery is paused at ``now``, or None. Order: the first cause to fix."""
        if self.auth is Auth.SIGNED_OUT:
            return "signed_out"
        if self.subscription is Subscription.INACTIVE:
            return "subscription_inactive"
        if self.rate_limited_until is not None and now < self.rate_limited_until:
            return "rate_limited"
        return None


# Events ---------------------------------------------------------------------------

class TokenStored(Value):
    """The page handed over a token (``flattr-token``)."""

    __slots__ = ("subscription_active",)
    _defaults = {"subscription_active": None}  # noqa: RUF012
    subscription_active: bool | None


class SignedOut(Value):
    """The user signed out from the extension."""

    __slots__ = ()


class Unauthorized(Value):
    """The API answered 401 to a request made with the stored token."""

    __slots__ = ()


class TokenUnusable(Value):
    """The stored token cannot be decrypted (tampered row, replaced key): signed out."""

    __slots__ = ()


class SubscriptionSet(Value):
    """The page said the subscription changed (``flattr-subscription``)."""

    __slots__ = ("active",)
    active: bool


class PaymentRequired(Value):
    """The API answered 402 to a request made with the stored token."""

    __slots__ = ()


class RateLimited(Value):
    """The API refused for the rate limit (docs/protocol.md#bulk-answers).

    Paused until ``until`` (epoch s).
    """

    __slots__ = ("until",)
    until: float


Event = (TokenStored | SignedOut | Unauthorized | TokenUnusable | SubscriptionSet
         | PaymentRequired | RateLimited)


def transition(state: Snapshot, event: Event) -> Snapshot:
    """The snapshot after ``event``; raises TransitionError if ``event`` is illegal now."""
    if isinstance(event, TokenStored):
        subscription = state.subscription
        if event.subscription_active is not None:
            active = event.subscription_active
            subscription = Subscription.ACTIVE if active else Subscription.INACTIVE
        return state.replace(auth=Auth.SIGNED_IN, subscription=subscription)
    if isinstance(event, SignedOut):
        return state.replace(auth=Auth.SIGNED_OUT, rate_limited_until=None)
    if isinstance(event, SubscriptionSet):
        return state.replace(
            subscription=Subscription.ACTIVE if event.active else Subscription.INACTIVE
        )
    # The remaining events are about a stored token (answers to requests made with
    # it, or its decryption): they cannot happen while signed out.
    if state.auth is not Auth.SIGNED_IN:
        raise TransitionError(f"{type(event).__name__} is not allowed while {state.auth.value}")
    if isinstance(event, Unauthorized | TokenUnusable):
        return state.replace(auth=Auth.SIGNED_OUT, rate_limited_until=None)
    if isinstance(event, PaymentRequired):
        return state.replace(subscription=Subscription.INACTIVE)
    if isinstance(event, RateLimited):
        return state.replace(rate_limited_until=event.until)
    raise TransitionError(f"unknown event {event!r}")  # pragma: no cover


class StateStore:
    """The snapshot kept in the store, changed only through :meth:`apply`.

    Auth is whether a usable token row exists; subscription and rate limit live in
    the ``kv`` table. :meth:`apply` reads, transitions and writes inside one
    ``BEGIN IMMEDIATE`` transaction, so concurrent host processes serialize and no
    update is lost; an illegal transition rolls back and changes nothing.
    """

    def __init__(self, store: Store, tokens: TokenStore) -> None:
        self._store = store
        self._tokens = tokens

    def read(self) -> Snapshot:
        """The current snapshot (cheap: no decryption)."""
        return self._read(self._store.conn)

    def key_location(self) -> dict[str, str | None]:
        """Which backend holds the token's key, and why (``TokenStore.location``)."""
        return self._tokens.location()

    def _read(self, conn: sqlite3.Connection) -> Snapshot:
        rows = dict(
            conn.execute(
                "SELECT key, value FROM kv WHERE key IN ('subscription', 'rate_limited_until')"
            ).fetchall()
        )
        until = rows.get("rate_limited_until")
        return Snapshot(
            auth=Auth.SIGNED_IN if self._tokens.present() else Auth.SIGNED_OUT,
            subscription=Subscription(rows.get("subscription", Subscription.UNKNOWN.value)),
            rate_limited_until=float(until) if until else None,
        )

    def apply(
        self, event: Event, token: str | None = None, sent_with: bytes | None = None
    ) -> tuple[Snapshot, Snapshot]:
        """Apply ``event``; return (before, after).

        ``token`` is required with :class:`TokenStored`. ``sent_with`` (the
        ciphertext the request was made with, see ``TokenStore.load_sealed``) guards
        API answers: if the token changed since that request was sent (the user
        signed in again meanwhile), a 401 or 402 about the old token is ignored.
        """
        if isinstance(event, TokenStored) and token is None:
            raise TransitionError("TokenStored needs the token")
        sealed = self._tokens.seal(token) if token is not None else None
        with self._store.write() as conn:
            before = self._read(conn)
            if sent_with is not None and self._tokens.current_ciphertext(conn) != sent_with:
                return before, before
            after = transition(before, event)
            if sealed is not None:
                self._tokens.put(conn, sealed)
                # Signing in again answers a "store replaced" note (docs/protocol.md).
                conn.execute("DELETE FROM kv WHERE key = 'problem'")
            elif before.auth is Auth.SIGNED_IN and after.auth is Auth.SIGNED_OUT:
                self._tokens.delete(conn)
            self._write(conn, after)
        return before, after

    @staticmethod
    def _write(conn: sqlite3.Connection, state: Snapshot) -> None:
        conn.execute(
            "INSERT INTO kv (key, value) VALUES ('subscription', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (state.subscription.value,),
        )
        if state.rate_limited_until is None:
            conn.execute("DELETE FROM kv WHERE key = 'rate_limited_until'")
        else:
            conn.execute(
                "INSERT INTO kv (key, value) VALUES ('rate_limited_until', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(state.rate_limited_until),),
            )
