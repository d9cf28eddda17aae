"""Authentication, subscription and delivery pause: one state machine, as a table.

This module is the only place that decides "signed in", "subscription active" and
"delivery paused, and why" (docs/architecture.md#the-state-machine). It is pure:
:func:`transition` looks the event's type and the current auth state up in
:data:`TABLE` and returns the next :class:`Snapshot`; a pair the table does not
hold raises :class:`TransitionError` and changes nothing. Storing the snapshot is
:class:`flattr_host.storage.state.StateStore`'s job; the API client's
classification (:func:`flattr_host.delivery.api.classify`) answers with these
events directly.

Document 000 drives the rules: the page's ``flattr-token`` signs in (and may carry
the subscription), ``flattr-subscription`` sets it, a 401 from the API removes the
token, a 402 deactivates the subscription. A stored token that cannot be decrypted
signs out the same way a 401 does. A 403 ``rate_limit_exceeded`` (document 002)
pauses delivery until the reset time.
"""

from __future__ import annotations

from enum import Enum

from flattr_host.core.errors import TransitionError
from flattr_host.core.values import Value


class Auth(Enum):
    SIGNED_OUT = "signed_out"
    SIGNED_IN = "signed_in"


class Subscription(Enum):
    UNKNOWN = "unknown"  # nobody has told us yet: delivery is attempted, a 402 settles it
    ACTIVE = "active"
    INACTIVE = "inactive"


class Pause(Enum):
    """Why delivery waits; the value is the wire string (``queue.paused``, docs/protocol.md)."""

    SIGNED_OUT = "signed_out"
    SUBSCRIPTION_INACTIVE = "subscription_inactive"
    RATE_LIMITED = "rate_limited"

    @property
    def lifted_by_user(self) -> bool:
        """Only the user ends it (signing in, subscribing); a rate limit ends by itself."""
        return self is not Pause.RATE_LIMITED


class Snapshot(Value):
    __slots__ = ("auth", "subscription", "rate_limited_until")
    _defaults = {"auth": Auth.SIGNED_OUT, "subscription": Subscription.UNKNOWN,  # noqa: RUF012
                 "rate_limited_until": None}
    auth: Auth
    subscription: Subscription
    rate_limited_until: float | None

    def paused(self, now: float) -> Pause | None:
        """Why delivery is paused at ``now``, or None. Order: the first cause to fix."""
        if self.auth is Auth.SIGNED_OUT:
            return Pause.SIGNED_OUT
        if self.subscription is Subscription.INACTIVE:
            return Pause.SUBSCRIPTION_INACTIVE
        if self.rate_limited_until is not None and now < self.rate_limited_until:
            return Pause.RATE_LIMITED
        return None


def auth_of_token(row: bool, key_in_keyring: bool, key_file: bool) -> Auth:
    """Signed in when a token row exists and so does its key, as far as can be told
    without touching a keyring: a key file, or a keyring recorded as holding it.

    Only :class:`~flattr_host.storage.state.StateStore` writes or deletes the row,
    as :func:`transition` says; a row whose key turns out wrong counts as signed in
    until decrypting it fails and :class:`TokenUnusable` signs out.
    """
    return Auth.SIGNED_IN if row and (key_in_keyring or key_file) else Auth.SIGNED_OUT


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

#: Events the API's answers produce (a 401, a 402, a rate limit).
ApiEvent = Unauthorized | PaymentRequired | RateLimited


# The table ------------------------------------------------------------------------

class Set(Enum):
    """What an event does to the subscription or to the rate-limit pause."""

    KEEP = "keep"              # unchanged
    FROM_EVENT = "from_event"  # the event's value (TokenStored: only when it carries one)
    INACTIVE = "inactive"      # the subscription becomes inactive
    CLEAR = "clear"            # the rate-limit pause ends


class Rule(Value):
    __slots__ = ("auth", "subscription", "rate_limit")
    auth: Auth
    subscription: Set
    rate_limit: Set


_OUT, _IN = Auth.SIGNED_OUT, Auth.SIGNED_IN

#: ``TABLE[event type][auth now]`` is the rule; a missing pair is illegal. The
#: events about a stored token (answers to requests made with it, or its
#: decryption) cannot happen while signed out.
TABLE: dict[type, dict[Auth, Rule]] = {
    TokenStored: {_OUT: Rule(_IN, Set.FROM_EVENT, Set.KEEP),
                  _IN: Rule(_IN, Set.FROM_EVENT, Set.KEEP)},
    SignedOut: {_OUT: Rule(_OUT, Set.KEEP, Set.CLEAR),
                _IN: Rule(_OUT, Set.KEEP, Set.CLEAR)},
    SubscriptionSet: {_OUT: Rule(_OUT, Set.FROM_EVENT, Set.KEEP),
                      _IN: Rule(_IN, Set.FROM_EVENT, Set.KEEP)},
    Unauthorized: {_IN: Rule(_OUT, Set.KEEP, Set.CLEAR)},
    TokenUnusable: {_IN: Rule(_OUT, Set.KEEP, Set.CLEAR)},
    PaymentRequired: {_IN: Rule(_IN, Set.INACTIVE, Set.KEEP)},
    RateLimited: {_IN: Rule(_IN, Set.KEEP, Set.FROM_EVENT)},
}


def transition(state: Snapshot, event: Event) -> Snapshot:
    """The snapshot after ``event``; raises TransitionError if ``event`` is illegal now."""
    rules = TABLE.get(type(event))
    if rules is None:
        raise TransitionError(f"unknown event {event!r}")
    rule = rules.get(state.auth)
    if rule is None:
        raise TransitionError(f"{type(event).__name__} is not allowed while {state.auth.value}")
    return Snapshot(auth=rule.auth, subscription=_subscription(rule.subscription, state, event),
                    rate_limited_until=_rate_limit(rule.rate_limit, state, event))


def erases_token(before: Snapshot, after: Snapshot) -> bool:
    """Whether the stored token goes with this move: every sign-out does."""
    return before.auth is Auth.SIGNED_IN and after.auth is Auth.SIGNED_OUT


def _subscription(how: Set, state: Snapshot, event: Event) -> Subscription:
    active: bool | None = None
    if how is Set.INACTIVE:
        active = False
    elif how is Set.FROM_EVENT and isinstance(event, SubscriptionSet):
        active = event.active
    elif how is Set.FROM_EVENT and isinstance(event, TokenStored):
        active = event.subscription_active  # None: the page did not say
    if active is None:
        return state.subscription
    return Subscription.ACTIVE if active else Subscription.INACTIVE


def _rate_limit(how: Set, state: Snapshot, event: Event) -> float | None:
    if how is Set.CLEAR:
        return None
    if how is Set.FROM_EVENT and isinstance(event, RateLimited):
        return event.until
    return state.rate_limited_until
