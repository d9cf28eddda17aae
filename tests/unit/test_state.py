"""The auth/subscription state machine: legal moves, illegal ones change nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flattr_host.core.errors import TransitionError
from flattr_host.core.session import (
    TABLE,
    Auth,
    Pause,
    PaymentRequired,
    RateLimited,
    SignedOut,
    Snapshot,
    Subscription,
    SubscriptionSet,
    TokenStored,
    TokenUnusable,
    Unauthorized,
    transition,
)
from flattr_host.runtime.service import render_state
from flattr_host.storage.state import StateStore
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
    assert after.auth is Auth.SIGNED_OUT and after.paused(0) is Pause.SIGNED_OUT


def test_payment_required_deactivates() -> None:
    after = transition(SIGNED_IN, PaymentRequired())
    assert after.subscription is Subscription.INACTIVE
    assert after.paused(0) is Pause.SUBSCRIPTION_INACTIVE
    assert transition(after, SubscriptionSet(True)).paused(0) is None


def test_rate_limit_pauses_until_reset() -> None:
    after = transition(SIGNED_IN, RateLimited(100.0))
    assert after.paused(99.9) is Pause.RATE_LIMITED
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


# The table ------------------------------------------------------------------------

OUT, IN = Auth.SIGNED_OUT, Auth.SIGNED_IN
#: The rules as the protocol states them (docs/architecture.md#the-state-machine):
#: (event, auth before) -> auth after; a pair not listed is illegal.
EXPECTED_AUTH = {
    (TokenStored, OUT): IN, (TokenStored, IN): IN,
    (SignedOut, OUT): OUT, (SignedOut, IN): OUT,
    (SubscriptionSet, OUT): OUT, (SubscriptionSet, IN): IN,
    (Unauthorized, IN): OUT, (TokenUnusable, IN): OUT,
    (PaymentRequired, IN): IN, (RateLimited, IN): IN,
}
SAMPLES = [TokenStored(), TokenStored(False), SignedOut(), SubscriptionSet(True),
           SubscriptionSet(False), Unauthorized(), TokenUnusable(), PaymentRequired(),
           RateLimited(50.0)]
STARTS = [Snapshot(auth, sub, until) for auth in Auth for sub in Subscription
          for until in (None, 10.0)]


@pytest.mark.parametrize("event", SAMPLES, ids=repr)
@pytest.mark.parametrize("start", STARTS, ids=repr)
def test_every_pair_of_the_table(start: Snapshot, event: object) -> None:
    """Each (state, event) pair: the documented move, or TransitionError."""
    expected = EXPECTED_AUTH.get((type(event), start.auth))
    if expected is None:
        with pytest.raises(TransitionError):
            transition(start, event)  # type: ignore[arg-type]
        return
    after = transition(start, event)  # type: ignore[arg-type]
    assert after.auth is expected
    if isinstance(event, SubscriptionSet) or (isinstance(event, TokenStored)
                                              and event.subscription_active is not None):
        active = getattr(event, "active", getattr(event, "subscription_active", None))
        assert after.subscription is (Subscription.ACTIVE if active else Subscription.INACTIVE)
    elif isinstance(event, PaymentRequired):
        assert after.subscription is Subscription.INACTIVE
    else:
        assert after.subscription is start.subscription
    if isinstance(event, SignedOut | Unauthorized | TokenUnusable):
        assert after.rate_limited_until is None
    elif isinstance(event, RateLimited):
        assert after.rate_limited_until == 50.0
    else:
        assert after.rate_limited_until == start.rate_limited_until


def test_the_table_holds_every_event_and_nothing_else() -> None:
    assert set(TABLE) == {type(e) for e in SAMPLES}
    assert {(event, auth) for event, rules in TABLE.items() for auth in rules} \
        == set(EXPECTED_AUTH)


def test_pause_reasons_are_an_enum_with_the_wire_strings() -> None:
    assert {p.value for p in Pause} == {"signed_out", "subscription_inactive", "rate_limited"}
    assert [p for p in Pause if not p.lifted_by_user] == [Pause.RATE_LIMITED]
    limited = Snapshot(Auth.SIGNED_IN, Subscription.ACTIVE, 100.0)
    counts = {"pending": 1, "in_flight": 0, "failed": 0, "expired": 0, "done": 0,
              "next_attempt_at": 5.0}
    queue = render_state(limited, counts, 50.0)["queue"]
    assert queue["paused"] == "rate_limited" and queue["nextAttemptAt"] == 100_000
    queue = render_state(Snapshot(), counts, 50.0)["queue"]
    assert queue["paused"] == "signed_out" and queue["nextAttemptAt"] is None


def test_only_the_machine_decides_signed_in_and_pauses() -> None:
    """No other host module spells a pause reason or signs out by itself."""
    host = Path(__file__).resolve().parents[2] / "host"
    machine = host / "core" / "session.py"
    wire = {p.value for p in Pause} | {a.value for a in Auth}
    found = []
    for path in sorted(host.rglob("*.py")):
        if path == machine:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in wire
                    and id(node) not in docstrings):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr == "SIGNED_OUT":
                found.append(f"{path.name}:{node.lineno}: SIGNED_OUT")
    assert found == []


def test_the_token_row_goes_with_every_sign_out(store: Store, tokens: TokenStore) -> None:
    """Unauthorized, TokenUnusable and SignedOut all erase the row, through apply."""
    states = StateStore(store, tokens)
    for event in (SignedOut(), Unauthorized(), TokenUnusable()):
        states.apply(TokenStored(True), token="tok")
        assert store.conn.execute("SELECT count(*) FROM token").fetchone()[0] == 1
        states.apply(event)
        assert store.conn.execute("SELECT count(*) FROM token").fetchone()[0] == 0
        assert states.read().auth is Auth.SIGNED_OUT
