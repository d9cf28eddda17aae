"""The attention engine: decides which URL to flattr, and when.

Pure and deterministic: no I/O, no clock reads, no threads. The caller feeds it
timestamped :data:`Signal` values (relayed by the extension) and explicit
:meth:`AttentionEngine.advance` calls; the engine answers with :class:`Decision`
values ("flattr this URL now"). The same signals at the same times always give
the same decisions at the same times. Model and numbers: ``docs/attention.md``;
facts from the original Flattr extension ("deciding what to flattr").

Times
    ``at``/``now`` are real seconds on any monotonic clock the caller chooses
    (they must never decrease). Counters (attention, audio, thresholds) are kept
    in *nominal* seconds: ``scale`` real seconds of attention add one nominal
    second, and the 15 s activity window lasts ``15 * scale`` real seconds. So
    ``scale=0.01`` makes the first threshold (50 s) fall after 0.5 s, while the
    persisted counters stay comparable between scaled and unscaled runs.

What counts (per normalized URL, see :mod:`flattr_host.protocol.urlnorm`)
    - the active tab of the focused window, while the idle state is ``active``
      and within the activity window opened or restarted by a user signal
      (tab activated, load finished in that tab, window focus gained, idle state
      back to active, relayed user activity);
    - every audible, unmuted tab, in the background too (whatever the focus,
      idle state or window). A URL attended in two ways at once accrues once.
    - never a tab in an incognito/private window (its URL is not even kept);
    - only URLs whose site the caller's policy enables (none by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flattr_host.core.errors import FlattrHostError
from flattr_host.protocol.urlnorm import UrlError, normalize, site_of

__all__ = [
    "ACTIVITY_WINDOW_S",
    "AUDIO_PAGE_AFTER_S",
    "AUDIO_THRESHOLDS_S",
    "NORMAL_THRESHOLDS_S",
    "RECORD_VERSION",
    "REPEAT_EVERY_S",
    "AttentionEngine",
    "AttentionError",
    "AudibleChanged",
    "ClockError",
    "Decision",
    "IdleChanged",
    "LoadFinished",
    "ManualFlattr",
    "PageCounter",
    "PageStatus",
    "RecordError",
    "Reset",
    "Signal",
    "SitePolicy",
    "TabActivated",
    "TabClosed",
    "UrlChanged",
    "UserActivity",
    "WindowFocusChanged",
    "parse_scale",
    "threshold_at",
]

# docs/attention.md, "Thresholds": the original extension's numbers.
NORMAL_THRESHOLDS_S: tuple[float, ...] = (50, 96, 138, 176, 210)
AUDIO_THRESHOLDS_S: tuple[float, ...] = (140, 400, 880, 1480, 2460, 3660)
REPEAT_EVERY_S: float = 86400  # after the last listed threshold, one more per day
ACTIVITY_WINDOW_S: float = 15  # a user signal opens/restarts a 15 s window
AUDIO_PAGE_AFTER_S: float = 20  # 20 s of audio make a page an "audio page"
RECORD_VERSION = 1

IdleState = Literal["active", "idle", "locked"]
Reason = Literal["threshold", "manual"]
SitePredicate = Callable[[str], bool]


class AttentionError(FlattrHostError):
    """Root of the attention engine's errors (under the host's single root)."""


class ClockError(AttentionError, ValueError):
    """A signal or advance() is earlier than the engine's current time."""


class RecordError(AttentionError, ValueError):
    """A persisted record has the wrong shape or values."""


def parse_scale(text: str) -> float:
    """Parse ``FLATTR_ATTENTION_SCALE``: a finite number with 0 < scale <= 1."""
    try:
        value = float(text)
    except ValueError as exc:
        raise AttentionError(f"attention scale must be a number, got {text!r}") from exc
    _check_scale(value)
    return value


def _check_scale(scale: float) -> None:
    if not (math.isfinite(scale) and 0 < scale <= 1):
        raise AttentionError(f"attention scale must be > 0 and <= 1, got {scale!r}")


def threshold_at(index: int, audio: bool) -> float:
    """The ``index``-th threshold (0-based) in nominal seconds for a page kind.

    After the listed thresholds, one more every :data:`REPEAT_EVERY_S`.
    """
    if index < 0:
        raise AttentionError(f"threshold index must be >= 0, got {index}")
    table = AUDIO_THRESHOLDS_S if audio else NORMAL_THRESHOLDS_S
    if index < len(table):
        return table[index]
    return table[-1] + REPEAT_EVERY_S * (index - len(table) + 1)


# --------------------------------------------------------------------- signals


@dataclass(frozen=True, slots=True, kw_only=True)
class TabActivated:
    """The user selected ``tab_id`` in ``window_id`` (``tabs.onActivated``). Opens the window."""

    at: float
    tab_id: int
    window_id: int
    url: str | None
    incognito: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlChanged:
    """A tab's URL changed (``tabs.onUpdated`` with ``url``). Does not open the window."""

    at: float
    tab_id: int
    window_id: int
    url: str | None
    incognito: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFinished:
    """A tab finished loading (``status: complete``). Opens the window if it is the front tab."""

    at: float
    tab_id: int
    window_id: int
    url: str | None
    incognito: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AudibleChanged:
    """A tab's ``audible`` or ``mutedInfo.muted`` changed."""

    at: float
    tab_id: int
    window_id: int
    url: str | None
    incognito: bool
    audible: bool
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TabClosed:
    """A tab was removed (``tabs.onRemoved``)."""

    at: float
    tab_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowFocusChanged:
    """The focused window changed; ``None`` when no browser window has focus."""

    at: float
    window_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleChanged:
    """``idle.onStateChanged``. ``active`` opens the window; the others stop foreground accrual."""

    at: float
    state: IdleState


@dataclass(frozen=True, slots=True, kw_only=True)
class UserActivity:
    """Evidence of a present user (relayed input, 2xx page load). Opens/restarts the window."""

    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualFlattr:
    """The user pressed "Flattr this page": flattr now, and jump to the next threshold."""

    at: float
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """Forget all browser state (tabs, focus, window); counters are kept.

    Sent when the extension (re)connects, before it replays the current state.
    """

    at: float


Signal = (
    TabActivated
    | UrlChanged
    | LoadFinished
    | AudibleChanged
    | TabClosed
    | WindowFocusChanged
    | IdleChanged
    | UserActivity
    | ManualFlattr
    | Reset
)


# ------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Decision:
    """Flattr ``url`` (normalized), decided at engine time ``at``.

    ``ordinal`` is which flattr of this page it is (1 = first threshold);
    ``threshold`` the nominal seconds reached (for ``manual``: the threshold
    jumped to).
    """

    url: str
    at: float
    reason: Reason
    ordinal: int
    threshold: float
    audio: bool


@dataclass(slots=True)
class PageCounter:
    """Durable per-URL counters, in nominal seconds. One row in the host's store."""

    url: str
    attention: float = 0.0
    audio: float = 0.0
    is_audio: bool = False
    next_index: int = 0

    @property
    def next_threshold(self) -> float:
        """Nominal attention seconds at which the next flattr is due."""
        return threshold_at(self.next_index, self.is_audio)

    def to_record(self) -> dict[str, Any]:
        """A plain dict of JSON/SQLite-friendly values."""
        return {
            "url": self.url,
            "attention_s": self.attention,
            "audio_s": self.audio,
            "is_audio": self.is_audio,
            "next_index": self.next_index,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PageCounter:
        """Inverse of :meth:`to_record`; raises :class:`RecordError` on bad values."""
        try:
            url, att, aud = record["url"], record["attention_s"], record["audio_s"]
            is_audio, index = record["is_audio"], record["next_index"]
        except (KeyError, TypeError) as exc:
            raise RecordError(f"page record misses field {exc}") from exc
        if not isinstance(url, str):
            raise RecordError(f"page record 'url' must be a string, got {url!r}")
        try:
            if normalize(url) != url:
                raise RecordError(f"page record 'url' is not normalized: {url!r}")
        except UrlError as exc:
            raise RecordError(f"page record 'url' is not countable: {exc}") from exc
        for name, value in (("attention_s", att), ("audio_s", aud)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RecordError(f"page record {name!r} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise RecordError(f"page record {name!r} must be finite and >= 0, got {value!r}")
        if is_audio not in (0, 1):  # SQLite gives 0/1, JSON gives bools
            raise RecordError(f"page record 'is_audio' must be a boolean, got {is_audio!r}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise RecordError(f"page record 'next_index' must be an integer >= 0, got {index!r}")
        return cls(url, float(att), float(aud), bool(is_audio), index)


@dataclass(frozen=True, slots=True)
class PageStatus:
    """What the popup shows for one page (nominal seconds)."""

    url: str
    site: str
    counted: bool  # the policy enables this site
    attention: float
    audio: float
    is_audio: bool
    flattrs: int  # thresholds reached so far (automatic and manual)
    next_threshold: float


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """Which sites count: none by default, the listed ``sites``, or all (``count_all``).

    Site keys come from :func:`flattr_host.protocol.urlnorm.site_of` (host without ``www.``).
    """

    count_all: bool = False
    sites: frozenset[str] = frozenset()

    def __call__(self, url: str) -> bool:
        """True when attention on the normalized ``url`` may be counted."""
        return self.count_all or site_of(url) in self.sites


# -------------------------------------------------------------------- engine


@dataclass(slots=True)
class _Tab:
    window_id: int
    url: str | None  # normalized; None when not countable or incognito
    audible: bool = False
    muted: bool = False


@dataclass(slots=True)
class _Boundary:
    """The next instant at which the set of accruing URLs or a counter changes."""

    at: float
    crossings: list[str] = field(default_factory=list)  # URLs reaching their threshold
    audio_flips: list[str] = field(default_factory=list)  # URLs becoming audio pages


class AttentionEngine:
    """Deterministic attention state machine; see the module docstring for the model.

    ``policy`` says which normalized URLs may be counted (default: none);
    ``scale`` shrinks every duration (``FLATTR_ATTENTION_SCALE``); ``start`` is
    the engine's initial time.
    """

    def __init__(
        self,
        policy: SitePredicate | None = None,
        *,
        scale: float = 1.0,
        start: float = 0.0,
        counters: Iterable[PageCounter] = (),
    ) -> None:
        _check_scale(scale)
        self._policy: SitePredicate = policy if policy is not None else SitePolicy()
        self._scale = scale
        self._now = start
        self._pages: dict[str, PageCounter] = {c.url: c for c in counters}
        self._dirty: set[str] = set()
        self._tabs: dict[int, _Tab] = {}
        self._front_tab: dict[int, int] = {}  # window id -> active tab id
        self._focused: int | None = None
        self._idle: IdleState = "active"
        self._window_until: float | None = None  # activity window end (real time)

    # ---------------------------------------------------------------- queries

    @property
    def now(self) -> float:
        """The engine's current time (the last signal or advance)."""
        return self._now

    @property
    def scale(self) -> float:
        """The duration scale factor given at construction."""
        return self._scale

    def attention(self, url: str) -> float:
        """Nominal attention seconds of ``url`` as of :attr:`now` (0 when never counted)."""
        page = self._pages.get(normalize(url))
        return page.attention if page else 0.0

    def next_threshold(self, url: str) -> float:
        """Nominal attention seconds at which ``url`` is next flattred."""
        page = self._pages.get(normalize(url))
        return page.next_threshold if page else threshold_at(0, audio=False)

    def status(self, url: str) -> PageStatus:
        """Everything the popup shows for ``url``. Raises UrlError if not countable."""
        key = normalize(url)
        page = self._pages.get(key) or PageCounter(key)
        return PageStatus(
            url=key,
            site=site_of(key),
            counted=self._policy(key),
            attention=page.attention,
            audio=page.audio,
            is_audio=page.is_audio,
            flattrs=page.next_index,
            next_threshold=page.next_threshold,
        )

    def counting(self) -> frozenset[str]:
        """The normalized URLs accruing attention right now."""
        return frozenset(self._attended(self._now)[0])

    def next_wakeup(self) -> float | None:
        """When the caller should next call :meth:`advance` if no signal arrives.

        The earliest of: a threshold crossing, the activity window closing, a
        page becoming an audio page. ``None`` when nothing accrues. Waking up
        early is harmless; waking up late only delays decisions (their ``at``
        stays exact).
        """
        boundary = self._next_boundary(self._now, math.inf)
        return None if boundary.at == math.inf else boundary.at

    # ----------------------------------------------------------- persistence

    def counters(self) -> list[PageCounter]:
        """All counters (copies), ordered by URL."""
        return [self._copy(self._pages[u]) for u in sorted(self._pages)]

    def take_dirty(self) -> list[PageCounter]:
        """Counters changed since the last call (copies, by URL); clears the set.

        The host writes these rows in the same transaction that queues the
        decisions returned with them.
        """
        dirty = [self._copy(self._pages[u]) for u in sorted(self._dirty) if u in self._pages]
        self._dirty.clear()
        return dirty

    def forget(self, urls: Iterable[str] | None = None) -> None:
        """Drop the counters of ``urls`` (normalized), or all when ``None``."""
        if urls is None:
            self._pages.clear()
        else:
            for url in urls:
                self._pages.pop(url, None)

    def to_record(self) -> dict[str, Any]:
        """The durable state as plain values: the counters only.

        Tabs, focus and idle state are the browser's and are replayed by the
        extension after a reconnect, so they are not persisted.
        """
        return {"version": RECORD_VERSION, "pages": [c.to_record() for c in self.counters()]}

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        policy: SitePredicate | None = None,
        *,
        scale: float = 1.0,
        start: float = 0.0,
    ) -> AttentionEngine:
        """A new engine holding the counters of :meth:`to_record`'s output."""
        if record.get("version") != RECORD_VERSION:
            raise RecordError(
                f"attention record version must be {RECORD_VERSION}, got {record.get('version')!r}"
            )
        pages = record.get("pages")
        if not isinstance(pages, list):
            raise RecordError(f"attention record 'pages' must be a list, got {pages!r}")
        counters = [PageCounter.from_record(p) for p in pages]
        return cls(policy, scale=scale, start=start, counters=counters)

    # --------------------------------------------------------------- inputs

    def set_policy(self, at: float, policy: SitePredicate) -> list[Decision]:
        """Change which sites count from ``at`` on; time before ``at`` uses the old policy."""
        decisions = self.advance(at)
        self._policy = policy
        return decisions

    def handle(self, signal: Signal) -> list[Decision]:
        """Advance to ``signal.at``, then apply the signal. Returns the decisions made."""
        decisions = self.advance(signal.at)
        match signal:
            case TabActivated():
                self._front_tab[signal.window_id] = signal.tab_id
                self._update_tab(signal.tab_id, signal.window_id, signal.url, signal.incognito)
                self._open_window(signal.at)
            case UrlChanged():
                self._update_tab(signal.tab_id, signal.window_id, signal.url, signal.incognito)
            case LoadFinished():
                self._update_tab(signal.tab_id, signal.window_id, signal.url, signal.incognito)
                if self._front_tab_id() == signal.tab_id:
                    self._open_window(signal.at)
            case AudibleChanged():
                tab = self._update_tab(
                    signal.tab_id, signal.window_id, signal.url, signal.incognito
                )
                tab.audible, tab.muted = signal.audible, signal.muted
            case TabClosed():
                self._tabs.pop(signal.tab_id, None)
                for window, tab_id in list(self._front_tab.items()):
                    if tab_id == signal.tab_id:
                        del self._front_tab[window]
            case WindowFocusChanged():
                self._focused = signal.window_id
                if signal.window_id is not None:
                    self._open_window(signal.at)
            case IdleChanged():
                self._idle = signal.state
                if signal.state == "active":
                    self._open_window(signal.at)
            case UserActivity():
                self._open_window(signal.at)
            case ManualFlattr():
                decisions.append(self._manual(signal.url, signal.at))
            case Reset():
                self._tabs.clear()
                self._front_tab.clear()
                self._focused = None
                self._idle = "active"
                self._window_until = None
        return decisions

    def advance(self, now: float) -> list[Decision]:
        """Accrue attention up to ``now``; return the thresholds crossed, at their exact times."""
        if not math.isfinite(now):
            raise ClockError(f"time must be finite, got {now!r}")
        if now < self._now:
            raise ClockError(f"time went backwards: {now!r} < engine time {self._now!r}")
        decisions: list[Decision] = []
        while self._now < now:
            boundary = self._next_boundary(self._now, now)
            touched = self._accrue(self._now, boundary)
            self._now = boundary.at
            decisions.extend(self._settle(touched, self._now))
        return decisions

    # ------------------------------------------------------------- internals

    def _open_window(self, at: float) -> None:
        self._window_until = at + ACTIVITY_WINDOW_S * self._scale

    def _update_tab(self, tab_id: int, window_id: int, url: str | None, incognito: bool) -> _Tab:
        # Incognito URLs are never kept, not even in memory.
        key = None if incognito or url is None else _countable(url)
        tab = self._tabs.get(tab_id)
        if tab is None:
            tab = self._tabs[tab_id] = _Tab(window_id, key)
        else:
            tab.window_id, tab.url = window_id, key
        return tab

    def _front_tab_id(self) -> int | None:
        return None if self._focused is None else self._front_tab.get(self._focused)

    def _attended(self, t: float) -> tuple[set[str], set[str]]:
        """(URLs accruing attention, URLs accruing audio) during the instant after ``t``."""
        audio = {
            tab.url
            for tab in self._tabs.values()
            if tab.url is not None and tab.audible and not tab.muted and self._policy(tab.url)
        }
        attended = set(audio)
        front_id = self._front_tab_id()
        front = None if front_id is None else self._tabs.get(front_id)
        if (
            front is not None
            and front.url is not None
            and self._idle == "active"
            and self._window_until is not None
            and t < self._window_until
            and self._policy(front.url)
        ):
            attended.add(front.url)
        return attended, audio

    def _page(self, url: str) -> PageCounter:
        page = self._pages.get(url)
        if page is None:
            page = self._pages[url] = PageCounter(url)
        return page

    def _next_boundary(self, t: float, limit: float) -> _Boundary:
        """The first instant in (t, limit] at which something changes, with its causes."""
        attended, audio = self._attended(t)
        boundary = _Boundary(limit)

        def offer(at: float, url: str | None, kind: str) -> None:
            at = max(at, t)  # a counter already past its mark resolves at once
            if at < boundary.at:
                boundary.at, boundary.crossings, boundary.audio_flips = at, [], []
            if at == boundary.at and url is not None:
                (boundary.crossings if kind == "cross" else boundary.audio_flips).append(url)

        if (
            self._window_until is not None
            and t < self._window_until
            and attended - audio  # the window only matters for the front tab
        ):
            offer(self._window_until, None, "window")
        for url in sorted(attended):
            page = self._pages.get(url) or PageCounter(url)
            offer(t + (page.next_threshold - page.attention) * self._scale, url, "cross")
        for url in sorted(audio):
            page = self._pages.get(url) or PageCounter(url)
            if not page.is_audio:
                offer(t + (AUDIO_PAGE_AFTER_S - page.audio) * self._scale, url, "flip")
        return boundary

    def _accrue(self, t: float, boundary: _Boundary) -> set[str]:
        """Add the time from ``t`` to the boundary; return the URLs touched."""
        attended, audio = self._attended(t)
        nominal = (boundary.at - t) / self._scale
        for url in attended:
            page = self._page(url)
            page.attention += nominal
            if url in audio:
                page.audio += nominal
            self._dirty.add(url)
        # Snap the counters whose event defined the boundary, so float rounding
        # can neither miss a crossing nor make the loop take a zero step.
        for url in boundary.crossings:
            page = self._page(url)
            page.attention = max(page.attention, page.next_threshold)
        for url in boundary.audio_flips:
            page = self._page(url)
            page.audio = max(page.audio, AUDIO_PAGE_AFTER_S)
        return attended

    def _settle(self, urls: set[str], at: float) -> list[Decision]:
        """Apply audio-page flips of ``urls``; emit every threshold they reached, at ``at``."""
        decisions: list[Decision] = []
        for url in sorted(urls):
            page = self._page(url)
            if not page.is_audio and page.audio >= AUDIO_PAGE_AFTER_S:
                page.is_audio = True
                self._dirty.add(url)
            while page.attention >= page.next_threshold:
                decisions.append(self._decide(page, at, "threshold"))
        return decisions

    def _decide(self, page: PageCounter, at: float, reason: Reason) -> Decision:
        decision = Decision(
            url=page.url,
            at=at,
            reason=reason,
            ordinal=page.next_index + 1,
            threshold=page.next_threshold,
            audio=page.is_audio,
        )
        page.next_index += 1
        self._dirty.add(page.url)
        return decision

    def _manual(self, url: str, at: float) -> Decision:
        # docs/attention.md, "Thresholds": a manual flattr jumps to the next
        # threshold: the page's attention becomes that threshold and it goes out now.
        page = self._page(normalize(url))
        page.attention = max(page.attention, page.next_threshold)
        return self._decide(page, at, "manual")

    @staticmethod
    def _copy(page: PageCounter) -> PageCounter:
        return PageCounter(page.url, page.attention, page.audio, page.is_audio, page.next_index)


def _countable(url: str) -> str | None:
    """The normalized URL, or None for URLs that are never counted (about:, chrome:, ...)."""
    try:
        return normalize(url)
    except UrlError:
        return None
