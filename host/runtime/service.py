"""Request handling: one small handler per request type (docs/protocol.md).

The service sees typed requests and returns result dicts; it never sees bytes or
file descriptors. Decisions about auth, subscription and pauses are the state
machine's (:mod:`flattr_host.core.session`); the service only feeds it events.
"""

from __future__ import annotations

import time

from flattr_host import PROTOCOL_VERSION, __version__
from flattr_host.core import health
from flattr_host.core.errors import RequestError, StoreBusy
from flattr_host.core.logs import preview
from flattr_host.core.session import (
    Auth,
    SignedOut,
    Snapshot,
    Subscription,
    SubscriptionSet,
    TokenStored,
)
from flattr_host.protocol import messages as m
from flattr_host.storage.parts import Parts, build
from flattr_host.storage.queue import PENDING
from flattr_host.storage.store import is_corruption_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Protocol

    from flattr_host.core.config import Config
    from flattr_host.core.logs import Logger
    from flattr_host.storage.store import Store

    class Waker(Protocol):
        """What the service needs from the submitter: a way to say "look again"."""

        def wake(self, debounce: bool = False) -> None: ...


_READ_ONLY = (m.GetState, m.Hello)
#: Requests after which the cached state is still right: read-only ones, and flattrs
#: (their handler adds what it committed to the cache, Service._flattr_group).
_KEEPS_CACHE = (*_READ_ONLY, m.FlattrUrls)

BUSY_MESSAGE = ("the store is busy: another flattr-host process holds its write lock; "
                "nothing was changed, try again")


def build_state(parts: Parts, now: float) -> dict[str, Any]:
    """The protocol's State object (docs/protocol.md#state), read from the parts' store,
    with the store's problem note."""
    stored = health.read_store_problem(parts.store.conn)
    return render_state(parts.states.read(), parts.queue.counts(), now,
                        parts.states.key_location(), health.PROCESS.current() or stored)


def render_state(snapshot: Snapshot, counts: dict[str, Any], now: float,
                 key: dict[str, str | None] | None = None,
                 problem: dict[str, Any] | None = None) -> dict[str, Any]:
    """The State object from a snapshot, queue counts, where the token's key is
    (``TokenStore.location``) and the current problem; pure (time-dependent pause)."""
    paused = snapshot.paused(now)
    next_at: float | None
    if (paused is not None and paused.lifted_by_user) or not counts["pending"]:
        next_at = None
    elif paused is not None:  # a rate limit: it ends by itself
        next_at = snapshot.rate_limited_until
    else:
        next_at = counts["next_attempt_at"]
    state: dict[str, Any] = {
        "authenticated": snapshot.auth is Auth.SIGNED_IN,
        "subscription": {"active": snapshot.subscription is Subscription.ACTIVE},
        "queue": {
            "pending": counts["pending"],
            "inFlight": counts["in_flight"],
            "failed": counts["failed"],
            "expired": counts["expired"],
            "done": counts["done"],
            "paused": None if paused is None else paused.value,
            "nextAttemptAt": None if next_at is None else int(next_at * 1000),
        },
        "key": key or {"backend": None, "reason": None},
        "problem": problem,
    }
    if counts.get("outcomes"):
        # Only once something was delivered: what the server said per item.
        state["queue"]["outcomes"] = counts["outcomes"]
    return state


class Service:
    """Handles requests on the message-loop thread with that thread's store connection."""

    def __init__(
        self,
        config: Config,
        log: Logger,
        store: Store,
        emit_state: Callable[[dict[str, Any]], None],
        waker: Waker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._log = log
        self._debug = log.enabled("debug")
        self._emit_state = emit_state
        self._waker = waker
        self._clock = clock
        self._store = store
        self._cached: tuple[int, Snapshot, dict[str, Any], dict[str, Any],
                            dict[str, Any] | None] | None = None
        self._rendered: dict[str, Any] | None = None  # shared: callers must not mutate it
        self.parts = build(config, store, log)
        self.tokens = self.parts.tokens
        self.states = self.parts.states
        self.queue = self.parts.queue
        self._handlers: dict[type, Callable[[Any], dict[str, Any]]] = {
            m.Hello: self._hello,
            m.GetState: lambda _body: self.state(),
            m.SetToken: self._set_token,
            m.SetSubscription: self._set_subscription,
            m.SignOut: self._sign_out,
            m.FlattrUrls: self._flattr,
            m.Flush: self._flush,
            m.RetryFailed: self._retry_failed,
            # attention: the engine is imported on the first of these
            m.FlattrManual: self._flattr_manual,
            m.AttentionSignals: self._attention_signals,
            m.AttentionPage: lambda body: self._attention_service().page(body.url),
            m.AttentionSettings: lambda _body: self._attention_service().settings(),
            m.AttentionSite: lambda body: self._attention_service().set_site(body.site,
                                                                             body.enabled),
            m.AttentionCountAll: lambda body: self._attention_service().set_count_all(
                body.enabled),
        }
        self._attention: Any = None  # AttentionService, made on the first attention request

    def state(self) -> dict[str, Any]:
        """The current State, re-read only when the store changed.

        ``PRAGMA data_version`` changes when another connection (the submitter
        thread, another host process) has committed since this connection last
        looked; this connection's own writes are handled by dropping the cache in
        :meth:`handle`, or, for flattrs, by adding them to it (:meth:`_flattr_group`).
        So every answer reflects every committed write, and a
        ``get-state`` costs one pragma instead of four queries (docs/performance.md,
        round trip).
        """
        now = self._clock()
        cached = self._cached
        version = self._store.data_version()
        if cached is None or cached[0] != version:
            with self._store.read() as conn:  # one snapshot: counts agree with the auth
                cached = self._cached = (version, self.states.read(), self.queue.counts(),
                                         self.tokens.location(),
                                         health.read_store_problem(conn))
            self._rendered = None
        snapshot = cached[1]
        problem = health.PROCESS.current() or cached[4]
        if snapshot.rate_limited_until is not None and now < snapshot.rate_limited_until:
            # the pause depends on the time
            return render_state(snapshot, cached[2], now, cached[3], problem)
        if self._rendered is None or self._rendered["problem"] is not problem:
            self._rendered = render_state(snapshot, cached[2], now, cached[3], problem)
        return self._rendered

    def invalidate(self) -> None:
        """Forget the cached state (the submitter thread changed the store)."""
        self._cached = None
        self._rendered = None

    def handle(self, request: m.Request) -> dict[str, Any]:
        """The result of ``request``; raises RequestError for a protocol error."""
        if not isinstance(request.body, _KEEPS_CACHE):
            self.invalidate()  # this request may write through our own connection
        try:
            return self._handlers[type(request.body)](request.body)
        except StoreBusy:
            # The loop's writes wait at most store_wait_s (stdio.Loop): another process
            # holds the lock. Nothing was changed; the extension or the user retries.
            raise RequestError(m.BUSY, BUSY_MESSAGE, request.id) from None

    def _changed(self, wake: bool = False, debounce: bool = False) -> None:
        """Emit the new state and, with ``wake``, wake the submitter: what changed is
        committed, so the submitter is woken even when reading the state fails."""
        try:
            self._emit_state(self.state())
        finally:
            if wake and self._waker is not None:
                self._waker.wake(debounce=debounce)

    def _hello(self, body: m.Hello) -> dict[str, Any]:
        from flattr_host.attention import (
            store as attention_store,  # plain SQL: the engine is not loaded
        )

        self._log.info("hello", extension_id=body.extension_id, version=body.version,
                       build=body.build)
        return {"host": {"version": __version__, "protocol": PROTOCOL_VERSION},
                "state": self.state(),
                "attention": attention_store.relay(self._store.conn,
                                                   self._config.attention_scale)}

    def _set_token(self, body: m.SetToken) -> dict[str, Any]:
        self._log.add_secret(body.token)
        try:
            self.states.apply(TokenStored(body.subscription_active), token=body.token)
        except StoreBusy:
            raise  # nothing stored: a `busy` error, the page may send the token again
        except Exception as exc:
            if is_corruption_error(exc):
                raise  # the message loop replaces the damaged store (docs/protocol.md)
            # The page is told authenticated=false when storing failed
            # (docs/protocol.md, set-token). The full error is in the log.
            self._log.exception("storing the token failed", exc)
            return {"authenticated": False}
        finally:
            # The loop needs a keyring only to seal: its connection is not kept
            # (the submitter opens its own when a batch is due).
            self.tokens.close()
        self._log.info("signed in", subscription_active=body.subscription_active)
        self._changed(wake=True)
        return {"authenticated": True}

    def _set_subscription(self, body: m.SetSubscription) -> dict[str, Any]:
        before, after = self.states.apply(SubscriptionSet(body.active))
        if before != after:
            self._log.info("subscription changed", active=body.active)
            self._changed(wake=body.active)
        return self.state()

    def _sign_out(self, _body: m.SignOut) -> dict[str, Any]:
        before, after = self.states.apply(SignedOut())
        if before != after:
            self._log.info("signed out")
            self._changed()
        return self.state()

    def handle_flattrs(self, bodies: Sequence[m.FlattrUrls]) -> list[dict[str, Any]]:
        """The results of consecutive ``flattr`` requests, committed in ONE transaction.

        Each result is ``{"queued": n}``, in order, returned once the whole group is
        durable (group commit, docs/architecture.md). All or nothing: another
        process holding the lock raises RequestError ``busy`` with no request id (it
        stands for every request of the group; nothing stored); any other error
        propagates as from :meth:`handle`. The state is emitted and the submitter
        woken once for the group.
        """
        try:
            return self._flattr_group(bodies)
        except StoreBusy:
            raise RequestError(m.BUSY, BUSY_MESSAGE) from None

    def _flattr(self, body: m.FlattrUrls) -> dict[str, Any]:
        return self._flattr_group((body,))[0]

    def _flattr_group(self, bodies: Sequence[m.FlattrUrls]) -> list[dict[str, Any]]:
        before = self._cached
        self.invalidate()  # until the commit returned: it writes through our connection
        now = self._clock()
        done = self.queue.enqueue_many([body.urls for body in bodies], now)
        counts = done.counts
        if before is not None and before[0] == done.data_version:
            # No other connection committed between that read and this transaction
            # (which held the write lock): the state now is that one plus these
            # pending items. Saves re-reading it, ~10% of a 1-URL request
            # (docs/performance.md, enqueue).
            queue = dict(before[2])
            queue[PENDING] += sum(counts)
            due = queue["next_attempt_at"]
            queue["next_attempt_at"] = now if due is None else min(due, now)
            self._cached = (before[0], before[1], queue, before[3], before[4])
        # Debug, not info: a log append right before the next commit makes that
        # commit's fdatasync flush the log file too (ext4 ordered mode): one info
        # line per request cost 25% of enqueue throughput (docs/performance.md).
        # Deliveries are logged at info by the submitter, with counts.
        # Bounded like a logged frame (logs.preview): a 1 MiB request is not logged twice.
        if self._debug:
            for body, queued in zip(bodies, counts, strict=True):
                self._log.debug("flattrs queued", count=queued,
                                urls=preview(list(body.urls))[0])
        try:
            self._changed(wake=True, debounce=True)
        except Exception as exc:
            if is_corruption_error(exc):
                raise  # the message loop replaces the store; salvage keeps these URLs
            # The group is durable, so its answers stand: an error reply would make
            # the page send the URLs again. The state goes with the next reply.
            self._log.exception("reading the state after a committed flattr group failed",
                                exc)
            self.invalidate()
        return [{"queued": queued} for queued in counts]

    def _flush(self, _body: m.Flush) -> dict[str, Any]:
        now = self._clock()
        moved = self.queue.reschedule_pending(now)
        self._log.info("flush requested", rescheduled=moved)
        if self._waker is not None:
            self._waker.wake()
        return self.state()

    def _retry_failed(self, _body: m.RetryFailed) -> dict[str, Any]:
        """Failed items go back to pending, due now (what ``queue retry-failed`` does);
        the reply comes once that is committed."""
        retried = self.queue.retry_failed(self._clock())
        self._log.info("retry of failed items requested", retried=retried)
        self._changed(wake=retried > 0)
        return {"retried": retried, "state": self.state()}

    # -- attention (docs/attention.md) ---------------------------------------

    def _attention_service(self) -> Any:
        """The host's AttentionService, created (engine imported) on first use."""
        if self._attention is None:
            from flattr_host.attention.service import AttentionService

            self._attention = AttentionService.open(self._config, self._log,
                                                    self._attention_queued, self._store)
        return self._attention

    def _attention_queued(self, _count: int) -> None:
        """The attention timer queued flattrs (its own thread): deliver them."""
        self.invalidate()
        if self._waker is not None:
            self._waker.wake(debounce=True)

    def _attention_signals(self, body: m.AttentionSignals) -> dict[str, Any]:
        if self._attention_service().signals(body.signals):
            self._changed(wake=True, debounce=True)
        return {}

    def _flattr_manual(self, body: m.FlattrManual) -> dict[str, Any]:
        queued, page = self._attention_service().manual(body.url)
        self._log.info("flattrs queued", count=queued, manual=True)
        self._log.debug("queued urls", urls=[body.url])
        self._changed(wake=True, debounce=True)
        return {"queued": queued, "page": page}

    def close(self) -> None:
        """Save attention and stop its timer, release the keyring connection (the
        message loop is shutting down)."""
        if self._attention is not None:
            self._attention.close()
            self._attention = None
        self.tokens.close()
