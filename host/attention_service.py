"""Attention in the running host: the pure engine, its store rows, its timer.

:class:`AttentionService` is the stateful glue around :class:`~flattr_host.attention.
AttentionEngine` (docs/attention.md, "Integration steps"):

- it stamps every relayed signal with its own monotonic clock (the extension's
  clocks decide nothing) and feeds the engine;
- it keeps one timer thread that sleeps until the engine's ``next_wakeup()`` (or
  the next daily prune) and then calls ``advance()``; it never polls: a new signal
  re-arms it through a condition variable;
- after every step it writes the changed counters and queues the decided flattrs
  in **one** transaction, so a crash neither loses a flattr nor sends one twice;
- it prunes counters not updated for ``max_age_s`` at start and daily.

It has its own store connection, used only under its lock (by the message loop and
the timer thread in turn). It is imported lazily, on the first attention request:
``hello`` never loads it. URLs are browsing history: they are logged at ``debug``
only.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from flattr_host import attention_store as rows
from flattr_host import health, recovery, retry
from flattr_host.attention import (
    AttentionEngine,
    AudibleChanged,
    Decision,
    IdleChanged,
    IdleState,
    LoadFinished,
    ManualFlattr,
    PageCounter,
    RecordError,
    Reset,
    Signal,
    SitePolicy,
    TabActivated,
    TabClosed,
    UrlChanged,
    UserActivity,
    WindowFocusChanged,
    parse_scale,
)
from flattr_host.config import Config
from flattr_host.logs import Logger
from flattr_host.messages import AttentionSignal
from flattr_host.queue import insert_pending
from flattr_host.store import Store, is_corruption_error
from flattr_host.urlnorm import UrlError, normalize

#: Counters not updated for this long are deleted (config ``attention_max_age_s``).
DEFAULT_MAX_AGE_S = 90 * 86400.0
PRUNE_EVERY_S = 86400.0

#: The timer thread, after an unexpected error, runs again after a backoff of this
#: base and cap; meanwhile the state's problem says attention stopped.
RESTART_BASE_S = 1.0
RESTART_CAP_S = 300.0

#: What a row whose values cannot be stored raises before SQLite runs the statement
#: (text that is not UTF-8, a number out of range): that row alone is rejected.
#: Errors from SQLite itself (a lock, a full disk, damage, a refused insert) keep
#: the whole step's backlog for the next try, as one transaction.
_ROW_ERRORS = (sqlite3.InterfaceError, sqlite3.ProgrammingError, UnicodeError, ValueError,
               TypeError, OverflowError)


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` if its numbers fit the table's rules, else ValueError (a NaN would
    reach SQLite as NULL and fail the whole transaction)."""
    for key in ("attention_s", "audio_s"):
        value = float(record[key])
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
    return record


def _save_counter(conn: sqlite3.Connection, counter: PageCounter, now: float) -> None:
    rows.upsert_counters(conn, [_checked(counter.to_record())], now)


def _row_problem(conn: sqlite3.Connection, write: Callable[[], object]) -> str | None:
    """Run ``write`` in a savepoint; on a row error undo just it and return why."""
    conn.execute("SAVEPOINT attention_row")
    try:
        write()
    except _ROW_ERRORS as exc:
        conn.execute("ROLLBACK TO attention_row")
        conn.execute("RELEASE attention_row")
        return f"{type(exc).__name__}: {exc}"[:300]
    conn.execute("RELEASE attention_row")
    return None


def to_signal(spec: AttentionSignal, at: float) -> Signal:
    """The engine's signal for a validated protocol signal, stamped ``at``."""
    kind = spec.kind
    if kind in ("tab-activated", "url-changed", "load-finished", "audible-changed"):
        assert spec.tab_id is not None and spec.window_id is not None
        # Incognito tabs: the URL is dropped here as well as in the engine.
        url = None if spec.incognito else spec.url
        common: dict[str, Any] = {"at": at, "tab_id": spec.tab_id, "window_id": spec.window_id,
                                  "url": url, "incognito": bool(spec.incognito)}
        if kind == "tab-activated":
            return TabActivated(**common)
        if kind == "url-changed":
            return UrlChanged(**common)
        if kind == "load-finished":
            return LoadFinished(**common)
        return AudibleChanged(**common, audible=bool(spec.audible), muted=bool(spec.muted))
    if kind == "tab-closed":
        assert spec.tab_id is not None
        return TabClosed(at=at, tab_id=spec.tab_id)
    if kind == "window-focus":
        return WindowFocusChanged(at=at, window_id=spec.window_id)
    if kind == "idle":
        state: IdleState = "active" if spec.state == "active" else (
            "locked" if spec.state == "locked" else "idle")
        return IdleChanged(at=at, state=state)
    if kind == "activity":
        return UserActivity(at=at)
    if kind == "reset":
        return Reset(at=at)
    raise ValueError(f"unknown signal kind {kind!r}")  # the parser lets none through


class AttentionService:
    """Engine + persistence + timer for one host process. Thread-safe.

    ``monotonic`` stamps signals (real seconds); ``wall`` stamps rows (epoch s,
    for pruning and the queue). ``on_queued`` is called (on the timer thread) after
    the timer queued flattrs; request handlers report their own.
    """

    def __init__(
        self,
        store: Store,
        log: Logger,
        *,
        scale: float = 1.0,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        on_queued: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        timer: bool = True,
        owns_store: bool = False,
    ) -> None:
        self._store = store
        self._log = log
        self._scale = scale
        self._max_age_s = max_age_s
        self._on_queued = on_queued
        self._mono = monotonic
        self._wall = wall
        self._owns_store = owns_store
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Written or queued by a step whose transaction failed: retried next time.
        self._backlog_counters: dict[str, PageCounter] = {}
        self._backlog_urls: list[tuple[Decision, str]] = []
        self._failing = False  # the timer failed and has not had a good step since
        self._rejected = 0  # rows that could not be stored (logged at warning once each)
        with store.write() as conn:
            pruned = rows.prune(conn, wall() - max_age_s)
            count_all, sites = rows.read_settings(conn)
            records = rows.load_counters(conn)
            self._generation = rows.generation(conn)
        counters = []
        for record in records:
            try:
                counters.append(PageCounter.from_record(record))
            except RecordError as exc:
                log.warning("attention counter row ignored", error=str(exc)[:200])
        self._engine = AttentionEngine(
            SitePolicy(count_all, frozenset(sites)), scale=scale, start=monotonic(),
            counters=counters,
        )
        self._next_prune = monotonic() + PRUNE_EVERY_S
        log.info("attention started", counters=len(counters), pruned=len(pruned),
                 sites=len(sites), count_all=count_all, scale=scale)
        if timer:
            self._thread = threading.Thread(target=self._run, name="attention", daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, config: Config, log: Logger,
             on_queued: Callable[[int], None]) -> AttentionService:
        """The service of a running host, on its own connection to the config's store."""
        scale = parse_scale(str(config.attention_scale))
        return cls(Store(config.db_path, log), log, scale=scale,
                   max_age_s=config.attention_max_age_s,
                   on_queued=on_queued, owns_store=True)

    # ----------------------------------------------------------- requests

    def signals(self, specs: Sequence[AttentionSignal]) -> int:
        """Apply relayed signals in order, all stamped now; returns flattrs queued."""
        with self._cond:
            now = self._mono()
            decisions: list[Decision] = []
            for spec in specs:
                decisions += self._engine.handle(to_signal(spec, now))
            return self._commit(decisions)

    def manual(self, url: str) -> tuple[int, dict[str, Any] | None]:
        """"Flattr this page": queue ``url`` as given, and jump its counter.

        Returns (flattrs queued, the page's status or None when ``url`` cannot be
        counted, e.g. an unusual host the normalizer refuses: it is queued anyway).
        """
        with self._cond:
            now = self._mono()
            try:
                key = normalize(url)
            except UrlError:
                decisions = self._engine.advance(now)
                return self._commit(decisions, extra=[url]), None
            decisions = self._engine.handle(ManualFlattr(at=now, url=url))
            queued = self._commit(decisions, manual_url=(key, url))
            return queued, self._status(url)

    def page(self, url: str) -> dict[str, Any]:
        """What the popup shows for ``url`` (nominal seconds, accrued up to now)."""
        with self._cond:
            queued = self._commit(self._engine.advance(self._mono()))
            status = self._status(url)
        if queued:
            self._notify(queued)
        return status

    def settings(self) -> dict[str, Any]:
        with self._cond:
            return self._settings()

    def set_site(self, site: str, enabled: bool) -> dict[str, Any]:
        """Opt ``site`` (a key from ``attention-page``, checked by the parser) in or out."""
        with self._cond:
            with self._store.write() as conn:
                rows.set_site(conn, site, enabled, self._wall())
            self._log.info("attention site changed", enabled=enabled)
            self._log.debug("attention site", site=site, enabled=enabled)
            return self._reload_policy()

    def set_count_all(self, enabled: bool) -> dict[str, Any]:
        with self._cond:
            with self._store.write() as conn:
                rows.set_count_all(conn, enabled)
            self._log.info("attention count every site", enabled=enabled)
            return self._reload_policy()

    def tick(self) -> int:
        """Advance to now (the timer's job; tests call it directly); returns flattrs queued."""
        with self._cond:
            queued = self._tick_locked()
        if queued:
            self._notify(queued)
        return queued

    def next_wakeup(self) -> float | None:
        with self._cond:
            return self._engine.next_wakeup()

    def close(self) -> None:
        """Stop the timer, save the attention accrued so far, close an owned store."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._cond:
            try:
                queued = self._commit(self._engine.advance(self._mono()))
                if queued:
                    self._log.info("attention flattrs queued at exit", count=queued)
            except Exception as exc:
                self._log.exception("saving attention at exit failed", exc)
            if self._owns_store:
                self._store.close()

    # ---------------------------------------------------------- internals

    def _notify(self, queued: int) -> None:
        if self._on_queued is not None:
            try:
                self._on_queued(queued)
            except Exception as exc:
                self._log.exception("attention: notifying the queue failed", exc)

    def _status(self, url: str) -> dict[str, Any]:
        try:
            status = self._engine.status(url)
        except UrlError:
            return {"countable": False}
        count_all, sites = self._policy_parts()
        return {
            "countable": True,
            "url": status.url,
            "site": status.site,
            "counted": status.counted,
            "siteEnabled": status.site in sites,
            "countAll": count_all,
            "attention": round(status.attention, 3),
            "audio": round(status.audio, 3),
            "audioPage": status.is_audio,
            "flattrs": status.flattrs,
            "nextThreshold": status.next_threshold,
        }

    def _policy_parts(self) -> tuple[bool, list[str]]:
        with self._store.read() as conn:
            return rows.read_settings(conn)

    def _settings(self) -> dict[str, Any]:
        count_all, sites = self._policy_parts()
        return {"countAll": count_all, "sites": sites, "active": count_all or bool(sites),
                "heartbeatMs": rows.heartbeat_ms(self._scale)}

    def _reload_policy(self) -> dict[str, Any]:
        count_all, sites = self._policy_parts()
        decisions = self._engine.set_policy(self._mono(), SitePolicy(count_all, frozenset(sites)))
        self._commit(decisions)
        self._cond.notify_all()
        return {"countAll": count_all, "sites": sites, "active": count_all or bool(sites),
                "heartbeatMs": rows.heartbeat_ms(self._scale)}

    def _tick_locked(self) -> int:
        now = self._mono()
        queued = self._commit(self._engine.advance(now))
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            self._prune()
        return queued

    def _prune(self) -> None:
        with self._store.write() as conn:
            gone = rows.prune(conn, self._wall() - self._max_age_s)
            if gone:
                self._generation = rows.generation(conn)
        if gone:
            self._engine.forget(gone)
            self._log.info("attention counters pruned", count=len(gone))

    def _commit(self, decisions: list[Decision], manual_url: tuple[str, str] | None = None,
                extra: Iterable[str] = ()) -> int:
        """Write changed counters and queue ``decisions`` in one transaction.

        A manual decision queues the URL the user was looking at (``manual_url``'s
        second item), thresholds the normalized URL. Returns how many were queued.
        A failed transaction keeps both for the next step (log, no crash).
        """
        for decision in decisions:
            url = decision.url
            if decision.reason == "manual" and manual_url and manual_url[0] == decision.url:
                url = manual_url[1]
            self._backlog_urls.append((decision, url))
        for counter in self._engine.take_dirty():
            self._backlog_counters[counter.url] = counter
        extra = list(extra)
        if not self._backlog_counters and not self._backlog_urls and not extra:
            self._cond.notify_all()  # the next wake-up may have moved
            return 0
        now = self._wall()
        try:
            urls = self._write(now, extra)
        except Exception as exc:
            self._log.exception("saving attention failed; will retry", exc)
            if is_corruption_error(exc):
                self._recover(exc)
            if extra:
                raise
            return 0
        finally:
            self._cond.notify_all()
        if urls:
            self._log.info("attention flattrs queued", count=len(urls))
            self._log.debug("attention flattrs", urls=urls)
        return len(urls)

    def _write(self, now: float, extra: list[str]) -> list[str]:
        with self._store.write() as conn:
            generation = rows.generation(conn)
            pending = self._backlog_urls
            if generation != self._generation:
                # `flattr-host attention clear` or another host's prune deleted rows.
                stored = {r["url"] for r in rows.load_counters(conn)}
                gone = [c.url for c in self._engine.counters() if c.url not in stored]
                self._engine.forget(gone)
                for url in gone:
                    self._backlog_counters.pop(url, None)
                pending = [(d, u) for d, u in pending if d.reason == "manual" or d.url in stored]
            # Another host sharing the store may have queued a threshold already.
            done = rows.stored_next_index(conn, {d.url for d, _u in pending})
            urls = [u for d, u in pending if d.reason == "manual" or d.ordinal > done.get(d.url, 0)]
            urls += extra
            # One row per savepoint: a row that cannot be stored (text that is not
            # UTF-8, a value out of range) is rejected alone; the rest is saved.
            for counter in list(self._backlog_counters.values()):
                why = _row_problem(conn, partial(_save_counter, conn, counter, now))
                if why is not None:
                    self._reject("counter", counter.url, why)
                    self._engine.forget([counter.url])
            queued: list[str] = []
            for url in urls:
                why = _row_problem(conn, partial(insert_pending, conn, [url], now))
                if why is None:
                    queued.append(url)
                else:
                    self._reject("flattr", url, why)
        self._generation = generation
        self._backlog_counters.clear()
        self._backlog_urls = []
        return queued

    def _reject(self, kind: str, url: str, why: str) -> None:
        self._rejected += 1
        self._log.warning(f"attention {kind} rejected: it cannot be stored", reason=why,
                          rejected=self._rejected)
        self._log.debug(f"attention {kind} rejected", url=url.encode("utf-8", "backslashreplace")
                        .decode("utf-8"), reason=why)

    def _recover(self, exc: BaseException) -> None:
        """The store is damaged: replaced as at start-up (the backlog is kept)."""
        try:
            recovery.recover(self._store, self._log, exc)
        except Exception as failure:
            self._log.exception("replacing the damaged store failed", failure)

    def _run(self) -> None:
        """The timer thread: sleep until the next change, advance, repeat.

        An unexpected error is logged, reported as the state's problem, and the
        loop runs again after a backoff; the problem goes with the next good step.
        """
        failures = 0
        try:
            while True:
                try:
                    if not self._timer_step():
                        return
                    failures = 0
                except Exception as exc:
                    self._failing = True
                    failures += 1
                    policy = retry.Policy(RESTART_BASE_S, RESTART_CAP_S)
                    wait = retry.ceiling(failures, policy)
                    self._log.exception("attention timer stopped by an internal error; "
                                        "restarting", exc, restarts=failures, in_s=wait)
                    health.PROCESS.report(
                        "attention", "attention_stopped",
                        f"attention stopped by an internal error ({type(exc).__name__}: "
                        f"{str(exc)[:300]}); restarting in {wait:g} s")
                    with self._cond:
                        if not self._stopping:
                            self._cond.wait(wait)
        finally:
            if not self._stopping:  # only something like SystemExit gets here
                health.PROCESS.report("attention", "attention_stopped",
                                      "attention stopped: its timer thread ended")

    def _timer_step(self) -> bool:
        """Sleep or advance once; False when stopping."""
        queued = 0
        with self._cond:
            if self._stopping:
                return False
            now = self._mono()
            wakeup = self._engine.next_wakeup()
            due = self._next_prune if wakeup is None else min(wakeup, self._next_prune)
            if due > now:
                self._running_again()
                self._cond.wait(due - now)  # notified when a step re-arms
                return True
            queued = self._tick_locked()
        if queued:
            self._notify(queued)
        self._running_again()
        return True

    def _running_again(self) -> None:
        """A step went through after a failure: the problem is over."""
        if self._failing:
            self._failing = False
            health.PROCESS.resolve("attention")
