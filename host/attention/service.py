"""Attention in the running host: the pure engine, its store rows, its timer.

:class:`AttentionService` is the stateful glue around :class:`~flattr_host.attention.engine.
AttentionEngine` (docs/attention.md, "Integration steps"):

- it stamps every relayed signal with its own monotonic clock (the extension's
  clocks decide nothing) and feeds the engine;
- it keeps one timer thread that sleeps until the engine's ``next_wakeup()`` (or
  the next daily prune) and then calls ``advance()``; it never polls: a new signal
  re-arms it through a condition variable;
- after every step it writes the changed counters and queues the decided flattrs
  in **one** transaction, so a crash neither loses a flattr nor sends one twice;
- it prunes counters not updated for ``max_age_s`` at start and daily.

Two connections, so that another process holding the store's write lock never
stalls the message loop (docs/attention.md, "Durability"):

- its own (``store``), used by the timer thread alone: it saves the counters and
  the flattrs the engine decided, waiting for the lock as long as it takes;
- the message loop's (``requests``): reads, and the writes a request must answer
  for (a manual flattr, a site setting), which wait at most ``store_wait_s`` and
  then fail with StoreBusy *before* the engine is touched.

Both take the write lock first and the engine's lock second, so nothing waits for
another process while holding the engine. It is imported lazily, on the first
attention request: ``hello`` never loads it. URLs are browsing history: they are
logged at ``debug`` only.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from flattr_host.attention import store as rows
from flattr_host.attention.engine import (
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
from flattr_host.core import health, supervise
from flattr_host.core.config import Config
from flattr_host.core.errors import StoreBusy
from flattr_host.core.logs import Logger
from flattr_host.protocol.messages import AttentionSignal
from flattr_host.protocol.urlnorm import UrlError, normalize
from flattr_host.storage import recovery
from flattr_host.storage.parts import open_store
from flattr_host.storage.queue import insert_pending
from flattr_host.storage.store import Store, is_corruption_error

#: Counters not updated for this long are deleted (config ``attention_max_age_s``).
DEFAULT_MAX_AGE_S = 90 * 86400.0
PRUNE_EVERY_S = 86400.0
#: After a failed save the timer tries again this much later (not in a tight loop).
RETRY_SAVE_S = 1.0

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
    the timer saved flattrs it queued. Requests return their own counts.

    With ``timer=False`` (tests) there is no thread: every step saves at once on
    ``store``, and :meth:`tick` stands in for the timer. With the timer, every step
    only updates the engine and asks the thread to save; ``requests`` (the loop's
    connection) must then be another connection than ``store``.
    """

    def __init__(
        self,
        store: Store,
        log: Logger,
        *,
        requests: Store | None = None,
        scale: float = 1.0,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        on_queued: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        timer: bool = True,
        owns_store: bool = False,
        retry_s: float = RETRY_SAVE_S,
    ) -> None:
        if timer and (requests is None or requests is store):
            raise ValueError("with the timer thread, requests need their own connection")
        self._store = store
        self._requests = store if requests is None else requests
        self._log = log
        self._scale = scale
        self._max_age_s = max_age_s
        self._on_queued = on_queued
        self._mono = monotonic
        self._wall = wall
        self._owns_store = owns_store
        self._retry_s = retry_s
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Decided or changed, not saved yet (a step not saved, or a failed save).
        self._backlog_counters: dict[str, PageCounter] = {}
        self._backlog_urls: list[tuple[Decision, str]] = []
        self._save_wanted = False
        self._failing = False  # the timer failed and has not had a good step since
        self._rejected = 0  # rows that could not be stored (logged at warning once each)
        self._retry_at: float | None = None
        # A read only: another process may hold the write lock. Pruning at start is
        # the first save's job (the timer thread's, off the message loop).
        with store.read() as conn:
            count_all, sites = rows.read_settings(conn)
            records = rows.load_counters(conn)
            self._generation = rows.generation(conn)
        counters = []
        for record in records:
            try:
                counters.append(PageCounter.from_record(record))
            except RecordError as exc:
                log.warning("attention counter row ignored", error=str(exc)[:200])
        #: URLs known to have a row (loaded or written): the fallback when the
        #: deletion records no longer reach back to our generation.
        self._known = {c.url for c in counters}
        self._engine = AttentionEngine(
            SitePolicy(count_all, frozenset(sites)), scale=scale, start=monotonic(),
            counters=counters,
        )
        self._next_prune = monotonic()  # due at once
        log.info("attention started", counters=len(counters), sites=len(sites),
                 count_all=count_all, scale=scale)
        if timer:
            self._thread = threading.Thread(target=self._run, name="attention", daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, config: Config, log: Logger, on_queued: Callable[[int], None],
             requests: Store) -> AttentionService:
        """The service of a running host: its own connection for saves, the loop's
        (``requests``, writes bounded by ``store_wait_s``) for requests."""
        scale = parse_scale(str(config.attention_scale))
        return cls(open_store(config, log), log, requests=requests, scale=scale,
                   max_age_s=config.attention_max_age_s,
                   on_queued=on_queued, owns_store=True)

    # ----------------------------------------------------------- requests

    def signals(self, specs: Sequence[AttentionSignal]) -> int:
        """Apply relayed signals in order, all stamped now.

        Returns the flattrs queued by this call: without the timer thread only; with
        it the thread saves them (and calls ``on_queued``).
        """
        with self._cond:
            now = self._mono()
            decisions: list[Decision] = []
            for spec in specs:
                decisions += self._engine.handle(to_signal(spec, now))
            self._hold(decisions)
        return self._stepped()

    def manual(self, url: str) -> tuple[int, dict[str, Any] | None]:
        """"Flattr this page": queue ``url`` as given, and jump its counter.

        Returns (flattrs queued, the page's status or None when ``url`` cannot be
        counted, e.g. an unusual host the normalizer refuses: it is queued anyway).
        Raises StoreBusy, with the engine untouched, when another process holds the
        write lock longer than the loop waits: nothing is queued, the user retries.
        """
        try:
            key: str | None = normalize(url)
        except UrlError:
            key = None
        try:
            with self._requests.write() as conn:  # the lock first: busy changes nothing
                with self._cond:
                    now = self._mono()
                    if key is None:
                        self._hold(self._engine.advance(now))
                        urls = self._write(conn, extra=[url])
                    else:
                        self._hold(self._engine.handle(ManualFlattr(at=now, url=url)),
                                   manual_url=(key, url))
                        urls = self._write(conn, manual=key)
        finally:
            with self._cond:
                self._cond.notify_all()  # the next wake-up may have moved
        self._logged(urls)
        return len(urls), (None if key is None else self._status(url))

    def page(self, url: str) -> dict[str, Any]:
        """What the popup shows for ``url`` (nominal seconds, accrued up to now).

        A deletion by another process shows at once (a read, never a wait).
        """
        with self._requests.read() as conn:
            generation = rows.generation(conn)
            with self._cond:
                if generation > self._generation:
                    self._forget_deleted(conn)
                    self._generation = generation
                self._hold(self._engine.advance(self._mono()))
        queued = self._stepped()
        if queued:
            self._notify(queued)
        return self._status(url)

    def settings(self) -> dict[str, Any]:
        return self._settings(*self._policy_parts())

    def set_site(self, site: str, enabled: bool) -> dict[str, Any]:
        """Opt ``site`` (a key from ``attention-page``, checked by the parser) in or out.

        Raises StoreBusy (nothing changed) when the write lock is not had in time.
        """
        with self._requests.write() as conn:
            rows.set_site(conn, site, enabled, self._wall())
            parts = rows.read_settings(conn)
        self._log.info("attention site changed", enabled=enabled)
        self._log.debug("attention site", site=site, enabled=enabled)
        return self._apply_policy(*parts)

    def set_count_all(self, enabled: bool) -> dict[str, Any]:
        with self._requests.write() as conn:
            rows.set_count_all(conn, enabled)
            parts = rows.read_settings(conn)
        self._log.info("attention count every site", enabled=enabled)
        return self._apply_policy(*parts)

    def tick(self) -> int:
        """Advance to now and save (the timer's job, without the thread); returns flattrs queued."""
        if self._thread is not None:
            raise RuntimeError("tick() is for a service without its timer thread")
        queued = self._save(prune=True)
        if queued:
            self._notify(queued)
        return queued

    def next_wakeup(self) -> float | None:
        with self._cond:
            return self._engine.next_wakeup()

    def close(self) -> None:
        """Stop the timer, save the attention accrued so far, close an owned store.

        The final save waits for another process's write lock (exit only).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self._store_wait_limit())
            if self._thread.is_alive():
                self._log.warning("attention timer still saving at exit; not saving again")
                return
        try:
            queued = self._save(prune=False, raise_errors=True)
            if queued:
                self._log.info("attention flattrs queued at exit", count=queued)
        except Exception as exc:
            self._log.exception("saving attention at exit failed", exc)
        if self._owns_store:
            self._store.close()

    # ---------------------------------------------------------- internals

    def _store_wait_limit(self) -> float:
        from flattr_host.storage.store import BUSY_TIMEOUT_MS

        return BUSY_TIMEOUT_MS / 1000 + 5.0

    def _notify(self, queued: int) -> None:
        if self._on_queued is not None:
            try:
                self._on_queued(queued)
            except Exception as exc:
                self._log.exception("attention: notifying the queue failed", exc)

    def _status(self, url: str) -> dict[str, Any]:
        with self._cond:
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
        with self._requests.read() as conn:  # a snapshot: never waits for a writer
            return rows.read_settings(conn)

    def _settings(self, count_all: bool, sites: list[str]) -> dict[str, Any]:
        return {"countAll": count_all, "sites": sites, "active": count_all or bool(sites),
                "heartbeatMs": rows.heartbeat_ms(self._scale)}

    def _apply_policy(self, count_all: bool, sites: list[str]) -> dict[str, Any]:
        with self._cond:
            self._hold(self._engine.set_policy(self._mono(),
                                               SitePolicy(count_all, frozenset(sites))))
        self._stepped()
        return self._settings(count_all, sites)

    def _hold(self, decisions: Iterable[Decision],
              manual_url: tuple[str, str] | None = None) -> None:
        """Keep decisions and changed counters for the next save (engine lock held).

        A manual decision queues the URL the user was looking at (``manual_url``'s
        second item), thresholds the normalized URL.
        """
        for decision in decisions:
            url = decision.url
            if decision.reason == "manual" and manual_url and manual_url[0] == decision.url:
                url = manual_url[1]
            self._backlog_urls.append((decision, url))
        for counter in self._engine.take_dirty():
            self._backlog_counters[counter.url] = counter

    def _stepped(self) -> int:
        """After a step: save now without the timer thread, else wake it to save."""
        if self._thread is None:
            return self._save(prune=True)
        with self._cond:
            self._save_wanted = True
            self._cond.notify_all()
        return 0

    def _save(self, prune: bool, raise_errors: bool = False) -> int:
        """Advance to now and write the backlog on our own connection; flattrs queued.

        The write lock is taken before the engine's lock (it may wait for another
        process). A failed save keeps everything for the next one (logged).
        """
        with self._cond:
            self._hold(self._engine.advance(self._mono()))
            if not (self._backlog_urls or self._backlog_counters
                    or (prune and self._mono() >= self._next_prune)):
                return 0  # nothing to write: do not even take the lock
        try:
            with self._store.write() as conn:
                with self._cond:
                    self._hold(self._engine.advance(self._mono()))
                    urls = self._write(conn, prune=prune)
        except Exception as exc:
            with self._cond:
                self._retry_at = self._mono() + self._retry_s
                self._save_wanted = True
                self._cond.notify_all()
            if raise_errors:
                raise
            if isinstance(exc, StoreBusy) or (isinstance(exc, sqlite3.OperationalError)
                                              and not is_corruption_error(exc)):
                self._log.warning("saving attention failed; will retry", error=str(exc)[:200])
            else:
                self._log.exception("saving attention failed; will retry", exc)
            if is_corruption_error(exc):
                self._recover(exc)
            return 0
        with self._cond:
            self._retry_at = None
            self._cond.notify_all()  # the next wake-up may have moved
        self._logged(urls)
        return len(urls)

    def _logged(self, urls: list[str]) -> None:
        if urls:
            self._log.info("attention flattrs queued", count=len(urls))
            self._log.debug("attention flattrs", urls=urls)

    def _write(self, conn: sqlite3.Connection, *, extra: Sequence[str] = (),
               manual: str | None = None, prune: bool = False) -> list[str]:
        """Write the backlog inside the open write transaction ``conn`` (engine lock held).

        Takes the backlog out first and puts it back if anything here or the commit
        fails, so one decision is never in two saves. ``manual``/``extra`` belong to
        the request being answered: on failure they are dropped, not retried later
        (the request gets an error and the user may click again).
        """
        generation = rows.generation(conn)
        if generation > self._generation:
            # Committed by others: forgotten for good, even if this save fails.
            self._forget_deleted(conn)
            self._generation = generation
        pending, counters = self._backlog_urls, self._backlog_counters
        self._backlog_urls, self._backlog_counters = [], {}
        now = self._wall()
        rejected: set[str] = set()
        try:
            # Another host sharing the store may have queued a threshold already.
            done = rows.stored_next_index(conn, {d.url for d, _u in pending})
            urls = [u for d, u in pending if d.reason == "manual" or d.ordinal > done.get(d.url, 0)]
            urls += extra
            # One row per savepoint: a row that cannot be stored (text that is not
            # UTF-8, a value out of range) is rejected alone; the rest is saved.
            for counter in counters.values():
                why = _row_problem(conn, partial(_save_counter, conn, counter, now))
                if why is not None:
                    self._reject("counter", counter.url, why)
                    self._engine.forget([counter.url])
                    rejected.add(counter.url)
            queued: list[str] = []
            for url in urls:
                why = _row_problem(conn, partial(insert_pending, conn, [url], now))
                if why is None:
                    queued.append(url)
                else:
                    self._reject("flattr", url, why)
            self._generation = generation
            if prune and self._mono() >= self._next_prune:
                # After the upsert: what we just wrote is fresh and stays.
                gone = rows.prune(conn, now - self._max_age_s)
                if gone:
                    self._engine.forget(gone)
                    self._known.difference_update(gone)
                    self._generation = rows.generation(conn)
                    self._log.info("attention counters pruned", count=len(gone))
                self._next_prune = self._mono() + PRUNE_EVERY_S
            # Committed here, under the engine's lock: if the commit fails, the
            # backlog is put back before any other save can take it.
            conn.execute("COMMIT")
        except BaseException:
            self._generation = generation
            kept = {u: c for u, c in counters.items() if u not in rejected}
            self._put_back(pending, kept, manual)
            raise
        self._known.update(u for u in counters if u not in rejected)
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

    def _put_back(self, pending: list[tuple[Decision, str]], counters: dict[str, PageCounter],
                  manual: str | None) -> None:
        if manual is not None:
            pending = [(d, u) for d, u in pending if not (d.reason == "manual" and d.url == manual)]
        self._backlog_urls = pending + self._backlog_urls
        for url, counter in counters.items():
            self._backlog_counters.setdefault(url, counter)

    def _forget_deleted(self, conn: sqlite3.Connection) -> None:
        """Another process (or the CLI) deleted counters: forget those pages only."""
        deleted = rows.deletions_since(conn, self._generation)
        if deleted is None:  # the records do not reach back: compare with what we wrote
            stored = rows.stored_urls(conn)
            known = self._known
            deleted = lambda url: url in known and url not in stored  # noqa: E731
        gone = [c.url for c in self._engine.counters() if deleted(c.url)]
        gone += [u for u in self._backlog_counters if deleted(u) and u not in gone]
        self._engine.forget(gone)
        for url in gone:
            self._backlog_counters.pop(url, None)
        self._known.difference_update(gone)
        self._backlog_urls = [(d, u) for d, u in self._backlog_urls
                              if d.reason == "manual" or not deleted(d.url)]

    def _run(self) -> None:
        """The timer thread: sleep until the next change or a save is asked, save, repeat.

        An unexpected error is logged, reported as the state's problem, and the
        loop runs again after a backoff; the problem goes with the next good step.
        """
        restarts = supervise.Restarts("attention", "attention_stopped", "attention timer",
                                      "attention", self._log, RESTART_BASE_S, RESTART_CAP_S)
        try:
            while True:
                try:
                    if not self._timer_step():
                        return
                    restarts.reset()
                except Exception as exc:
                    self._failing = True
                    restarts.wait_after(exc, self._cond, lambda: self._stopping)
        finally:
            restarts.ended(self._stopping)

    def _timer_step(self) -> bool:
        """Sleep until due, or save once; False when stopping."""
        with self._cond:
            if self._stopping:
                return False
            now = self._mono()
            due = self._due(now)
            if due > now:
                self._running_again()
                self._cond.wait(due - now)  # notified when a step re-arms
                return True
            self._save_wanted = False
        queued = self._save(prune=True)
        if queued:
            self._notify(queued)
        self._running_again()
        return True

    def _running_again(self) -> None:
        """A step went through after a failure: the problem is over."""
        if self._failing:
            self._failing = False
            health.PROCESS.resolve("attention")

    def _due(self, now: float) -> float:
        """When the timer must save next (engine lock held)."""
        wakeup = self._engine.next_wakeup()
        due = self._next_prune if wakeup is None else min(wakeup, self._next_prune)
        if self._save_wanted:
            due = min(due, now)
        if self._retry_at is not None:
            due = max(due, self._retry_at)
        return due
