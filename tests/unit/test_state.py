"""The auth/subscription state machine: legal moves, illegal ones change nothing."""

from __future__ import annotations

import pytest

from flattr_host.core.errors import TransitionError
from flattr_host.storage.state import (
    Auth,
    PaymentRequired,
    RateLimited,
    SignedOut,
    Snapshot,
    StateStore,
    Subscription,
    SubscriptionSet,
    TokenStored,
    TokenUnusable,
    Unauthorized,
    transition,
)
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore

SIGNED_IN = Snapshot(Auth.SIGNED_IN, Subscription.ACTIVE)


def test_token_signs_in_and_may_set_the_subscription() -> None:
    assert transition(Snapshot(), TokenStored()) == Snapshot(Auth.SIGNED_IN)
    assert transition(Snapshot(), TokenStored(True)).subscription is Subscription.ACTIVE
    inactive = Snapshot(subscription=Subscription.INACTIVE)
    assert transition(inactive, TokenStored()).subscription is Subscription.INACTIVE


def test_unauthorized_signs_out_and_pauses() -> None:
    after = transition(SIGNED_IN, Unauthorized())
    assert after.auth is Auth.SIGNED_OUT and after.paused(0) == "signed_out"


def test_payment_required_deactivates() -> None:
    after = transition(SIGNED_IN, PaymentRequired())
    assert after.subscription is Subscription.INACTIVE
    assert after.paused(0) == "subscription_inactive"
    assert transition(after, SubscriptionSet(True)).paused(0) is None


def test_rate_limit_pauses_until_reset() -> None:
    after = transition(SIGNED_IN, RateLimited(100.0))
    assert after.paused(99.9) == "rate_limited"
    assert after.paused(100.0) is None


def test_unknown_subscription_does_not_pause() -> None:
    assert Snapshot(Auth.SIGNED_IN).paused(0) is None


def test_unusable_token_signs_out_and_forgets_the_rate_limit() -> None:
    after = transition(SIGNED_IN.replace(rate_limited_until=100.0), TokenUnusable())
    assert after.auth is Auth.SIGNED_OUT and after.rate_limited_until is None
    assert after.subscription is Subscription.ACTIVE


@pytest.mark.parametrize("event", [Unauthorized(), PaymentRequired(), RateLimited(5.0),
                                   TokenUnusable()])
def test_api_answers_are_illegal_while_signed_out(event: object) -> None:
    with pytest.raises(TransitionError, match="not allowed while signed_out"):
        transition(Snapshot(), event)  # type: ignore[arg-type]


def test_sign_out_is_idempotent() -> None:
    assert transition(Snapshot(), SignedOut()) == Snapshot()


def test_store_apply_persists_and_reads_back(store: Store, tokens: TokenStore) -> None:
    states = StateStore(store, tokens)
    before, after = states.apply(TokenStored(True), token="tok-abc")
    assert before == Snapshot() and after == SIGNED_IN
    assert states.read() == SIGNED_IN
    assert tokens.load() == "tok-abc"
    states.apply(SignedOut())
    assert states.read() == Snapshot(Auth.SIGNED_OUT, Subscription.ACTIVE)
    assert tokens.load() is None


def test_illegal_transition_in_the_store_changes_nothing(store: Store,
                                                         tokens: TokenStore) -> None:
    states = StateStore(store, tokens)
    states.apply(SubscriptionSet(True))
    rows_before = store.conn.execute("SELECT * FROM kv ORDER BY key").fetchall()
    with pytest.raises(TransitionError):
        states.apply(PaymentRequired())
    assert store.conn.execute("SELECT * FROM kv ORDER BY key").fetchall() == rows_before
    assert states.read().subscription is Subscription.ACTIVE


def test_answer_about_an_old_token_is_ignored(store: Store, tokens: TokenStore) -> None:
    states = StateStore(store, tokens)
    states.apply(TokenStored(True), token="old-token")
    sealed = tokens.load_sealed()
    assert sealed is not None
    states.apply(TokenStored(True), token="new-token")
    # A 401 for a request sent with the old token must not erase the new one.
    states.apply(Unauthorized(), sent_with=sealed[1])
    assert tokens.load() == "new-token"
    current = tokens.load_sealed()
    assert current is not None
    states.apply(Unauthorized(), sent_with=current[1])
    assert tokens.load() is None
