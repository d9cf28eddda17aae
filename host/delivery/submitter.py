"""The submitter: when and what to send, on a thread of its own.

It sleeps until something is due (no polling): the earliest pending item, an
expiring lease of another process, the end of a rate-limit pause, or a wake-up
from the message loop (new flattr, new token, re-activation, ``flush``). It then
leases a batch, posts it, renews the lease while the request is in flight, and
applies the answer: per-URL outcomes, backoff, or a state transition (401, 402,
rate limit) through :class:`~flattr_host.storage.state.StateStore`.

The thread has its own store connection. Clock, random draw and the API client
are injected so tests control time and use zero backoff.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from flattr_host.core import health, retry, supervise
from flattr_host.core.config import Config
from flattr_host.core.logs import Logger
from flattr_host.delivery.api import (
    ACCEPTED,
    IDLE_REUSE_S,
    Action,
    ApiClient,
    NetworkError,
    Response,
    Verdict,
    classify,
    is_accepted,
)
from flattr_host.storage import recovery
from flattr_host.storage.parts import Parts, build, open_store
from flattr_host.storage.queue import Batch, Queue, new_id
from flattr_host.storage.state import StateStore
from flattr_host.storage.store import is_corruption_error

#: Debounce: wait at most this many times the submit delay after the first new flattr.
DEBOUNCE_MAX_FACTOR = 5.0

#: After an unexpected error in a cycle, wait this long before the next one.
ERROR_PAUSE_S = 5.0

#: A submitter whose thread failed is started again after a backoff of this base and
#: cap (retry.next_attempt_at); meanwhile the state's problem says delivery stopped.
RESTART_BASE_S = 1.0
RESTART_CAP_S = 300.0

#: Retention runs at start-up and then at most this often (a host can live for days
#: while the browser stays open); it is also the longest the thread ever sleeps.
HOUSEKEEPING_S = 3600.0


class Submitter:
    """Delivers the queue in the background until :meth:`stop`."""

    def __init__(
        self,
        config: Config,
        log: Logger,
        on_change: Callable[[Parts], None],
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
        client_factory: Callable[[], ApiClient] | None = None,
    ) -> None:
        self._config = config
        self._log = log
        self._on_change = on_change
        self._clock = clock
        self._draw = draw
        self._client_factory = client_factory
        self._owner = new_id()
        self._policy = retry.Policy(config.retry_base_s, config.retry_cap_s)
        self._cond = threading.Condition()
        self._debounce_until: float | None = None
        self._debounce_first: float | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._renew_queue: Queue | None = None
        self._last_housekeeping = 0.0
        self._session_started = False

    # --- called from the message loop --------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)
            self._thread.start()

    def wake(self, debounce: bool = False) -> None:
        """Look at the queue again; ``debounce`` gathers a burst of flattrs first."""
        with self._cond:
            now = self._clock()
            if debounce and self._config.submit_delay_s > 0:
                pending = self._debounce_until is not None and self._debounce_until > now
                if self._debounce_first is None:
                    self._debounce_first = now
                limit = self._debounce_first + DEBOUNCE_MAX_FACTOR * self._config.submit_delay_s
                self._debounce_until = min(now + self._config.submit_delay_s, limit)
                if pending:
                    # The thread already sleeps until the earlier end of this debounce
                    # and looks again then; waking it for every flattr of a burst only
                    # costs both threads time (docs/performance.md, enqueue).
                    return
            else:
                self._debounce_until = None
                self._debounce_first = None
            self._cond.notify()

    def stop(self, grace_s: float) -> bool:
        """Stop after the request in flight, waiting at most ``grace_s``; True if clean."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            return True
        self._thread.join(grace_s)
        return not self._thread.is_alive()

    # --- the thread ----------------------------------------------------------------
    def _run(self) -> None:
        """The thread: a session, started again with backoff whenever it fails.

        While it is down the state's ``problem`` says delivery stopped and why
        (:mod:`flattr_host.core.health`); nothing a session does can end the thread
        silently.
        """
        restarts = supervise.Restarts("submitter", "delivery_stopped", "submitter", "delivery",
                                      self._log, RESTART_BASE_S, RESTART_CAP_S, self._draw)
        try:
            while not self._stopping:
                try:
                    self._session()
                    return
                except Exception as exc:
                    if self._session_started:  # it had run: a first failure again
                        restarts.reset()
                    self._session_started = False
                    restarts.wait_after(exc, self._cond, lambda: self._stopping)
        finally:
            restarts.ended(self._stopping)

    def _session(self) -> None:
        with open_store(self._config, self._log) as store, \
                open_store(self._config, self._log) as renew_store:
            self._renew_queue = build(self._config, renew_store, self._log).queue
            parts = build(self._config, store, self._log)
            client = self._client_factory() if self._client_factory else ApiClient(
                self._config.api_base, self._config.ca_bundle, self._config.request_timeout_s
            )
            try:
                self._startup(parts)
                self._session_started = True
                health.PROCESS.resolve("submitter")
                while self._guarded_cycle(parts, client):
                    pass
            finally:
                client.close()
                parts.close()

    def _guarded_cycle(self, parts: Parts, client: ApiClient) -> bool:
        """One cycle; an unexpected error is logged in full and retried later.

        Items stay where the store has them (a lease left behind expires), so an
        internal error costs time, never a flattr, and never stops delivery for
        the rest of the session.
        """
        try:
            going_on = self._cycle(parts, client)
        except Exception as exc:
            client.close()
            # Damage is handled as at start-up: kept aside, fresh store, signed out.
            # An error the integrity check does not confirm is an error like any
            # other (logged, paused): never a loop that spins on it.
            if is_corruption_error(exc) and recovery.recover(parts.store, self._log, exc):
                self._on_change(parts)
                return not self._stopping
            self._log.exception("submitter error; trying again shortly", exc)
            health.PROCESS.report(
                "submitter", "delivery_stopped",
                f"delivery failed by an internal error ({type(exc).__name__}: "
                f"{str(exc)[:300]}); trying again in {ERROR_PAUSE_S:g} s")
            with self._cond:
                if not self._stopping:
                    self._cond.wait(ERROR_PAUSE_S)
            return not self._stopping
        health.PROCESS.resolve("submitter")
        return going_on

    def _startup(self, parts: Parts) -> None:
        # Off the hello path: a store damaged inside its data pages opens fine and
        # only this check (or the first query that reads a bad page) finds it.
        if recovery.check_at_start(parts.store, self._log) is not None:
            self._on_change(parts)
        expired = self._housekeeping(parts.queue)
        # Off the hello path, a lost or replaced key shows up now; decrypting waits
        # for a batch, so an idle host never loads cryptography (TokenStore.check_key).
        if (parts.tokens.present() and not parts.tokens.check_key()) or expired:
            self._on_change(parts)

    def _housekeeping(self, queue: Queue) -> int:
        """Prune done items and expire old pending ones; returns how many expired."""
        now = self._clock()
        self._last_housekeeping = now
        pruned, expired = queue.prune(now, self._config.done_retention_s,
                                      self._config.pending_expiry_s)
        if pruned or expired:
            self._log.info("queue pruned", done_pruned=pruned, pending_expired=expired)
        return expired

    def _wait_time(self, states: StateStore, queue: Queue, now: float) -> float | None:
        """Seconds to sleep before the next look, None for "until woken", 0 for "now"."""
        state = states.read()
        if self._debounce_until is not None and now < self._debounce_until:
            return self._debounce_until - now
        paused = state.paused(now)
        if paused is not None and paused.lifted_by_user:
            return None
        if paused is not None and state.rate_limited_until is not None:
            return state.rate_limited_until - now
        due = queue.next_due(now)
        if due is None:
            return None
        return max(0.0, due - now)

    def _cycle(self, parts: Parts, client: ApiClient) -> bool:
        """Sleep until something is due, then deliver one batch; False when stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return False
                now = self._clock()
                if self._debounce_until is not None and now >= self._debounce_until:
                    self._debounce_until = None
                    self._debounce_first = None
                if (now - self._last_housekeeping >= HOUSEKEEPING_S
                        and self._housekeeping(parts.queue)):
                    self._on_change(parts)
                wait = self._wait_time(parts.states, parts.queue, now)
                if wait == 0:
                    break
                if wait is None or wait > IDLE_REUSE_S:
                    # Nothing due soon: the kept-alive connection would not be reused
                    # (ApiClient, IDLE_REUSE_S) and a keyring connection not needed.
                    # The TLS context stays: rebuilding it costs ~20 ms of CPU per
                    # burst and dropping it gave back no RSS (docs/performance.md).
                    client.close()
                    parts.tokens.close()
                if wait is None or wait > HOUSEKEEPING_S:
                    wait = HOUSEKEEPING_S
                self._log.debug("submitter sleeping", seconds=wait)
                health.PROCESS.resolve("submitter")  # it got this far: running again
                self._cond.wait(wait)  # a notify or the due time: look again
        self._deliver_once(parts, client)
        return True

    def _deliver_once(self, parts: Parts, client: ApiClient) -> None:
        now = self._clock()
        sealed = parts.tokens.load_sealed()
        if sealed is None:
            # A missing or undecryptable token counts as signed out without a request
            # (the original treated a missing token as a 401).
            self._on_change(parts)
            return
        token, ciphertext = sealed
        queue = parts.queue
        batch = queue.claim(self._owner, now, self._config.lease_s, self._config.batch_max)
        if batch is None:
            return
        urls = [item.url for item in batch.items]
        self._log.info("sending batch", items=len(urls), attempt=batch.attempt)
        self._log.debug("batch urls", urls=urls)
        response = self._post_with_lease(queue, batch, client, token, urls)
        now = self._clock()
        if isinstance(response, NetworkError):
            decision = Verdict(Action.RETRY, "network error")
            # The whole message: a TLS failure's reason comes after several colons.
            self._log.warning("delivery failed", reason=str(response)[:1000], items=len(urls))
        else:
            decision = self._classified(response, urls, now)
        self._apply(decision, parts, batch, ciphertext, now)
        self._on_change(parts)

    def _classified(self, response: Response, urls: list[str], now: float) -> Verdict:
        """``classify``'s verdict; should reading the answer ever fail, the status alone
        decides: a 2xx is still delivered (sending an accepted batch again could
        flattr twice), anything else is sent again later."""
        try:
            return classify(response, urls, now)
        except Exception as exc:
            self._log.exception("reading the API's answer failed", exc, status=response.status)
            if is_accepted(response.status):
                return Verdict(Action.DONE, f"http {response.status}",
                               note="answer not understood")
            return Verdict(Action.RETRY, f"http {response.status} answer not understood")

    def _post_with_lease(self, queue: Queue, batch: Batch, client: ApiClient, token: str,
                         urls: list[str]) -> Response | NetworkError:
        """Post, renewing the lease at a third of its length until the answer arrives."""
        lease = self._config.lease_s
        done = threading.Event()

        def renew() -> None:
            # Its own connection (opened once in _run): the submitter's is busy.
            renew_queue = self._renew_queue
            assert renew_queue is not None
            while not done.wait(lease / 3):
                if not renew_queue.renew(batch, self._clock(), lease):
                    self._log.warning("lease lost while a request was in flight",
                                      items=len(batch.items))
                    return

        renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            result: Response | NetworkError = client.post_bulk(token, urls)
        except NetworkError as exc:
            result = exc
        finally:
            done.set()
            renewer.join()
        return result

    def _apply(self, decision: Verdict, parts: Parts, batch: Batch, ciphertext: bytes,
               now: float) -> None:
        action, queue = decision.action, parts.queue
        if action is Action.DONE:
            if decision.note is not None:
                # Only the status decides (docs/protocol.md#bulk-answers): the items
                # are delivered; the body just did not say more than that.
                self._log.debug("bulk answer body not understood; batch delivered",
                                note=decision.note, reason=decision.reason)
            outcomes = {item.id: decision.outcomes.get(index, ACCEPTED)
                        for index, item in enumerate(batch.items)}
            settled = queue.complete(batch, outcomes, now)
            self._log.info("batch delivered", items=settled,
                           outcome_counts=_count(outcomes.values()))
        elif action is Action.RETRY:
            at = retry.next_attempt_at(now, batch.attempt, self._policy, self._draw(),
                                       decision.retry_after)
            queue.release(batch, at, decision.reason, now)
            self._log.warning("batch will be retried", reason=decision.reason,
                              attempt=batch.attempt, in_s=round(at - now, 3))
        elif action is Action.FAIL:
            failed = queue.fail(batch, decision.reason, now)
            self._log.error("batch refused by the API; items failed", reason=decision.reason,
                            items=failed)
        elif decision.event is not None:  # PAUSE (always with an event): the machine's own
            queue.release(batch, now, decision.reason, now, count_attempt=False)
            _before, after = parts.states.apply(decision.event, sent_with=ciphertext)
            paused = after.paused(now)
            self._log.warning("delivery paused", reason=decision.reason,
                              paused=None if paused is None else paused.value)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
