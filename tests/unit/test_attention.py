"""The attention engine, replayed on a virtual clock.

The numbers asserted here are written out literally from docs/attention.md
("Thresholds": the original extension's numbers), not read back from the module, so a change of the
engine's constants makes these tests fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flattr_host.attention.engine import (
    AttentionEngine,
    AttentionError,
    AudibleChanged,
    ClockError,
    Decision,
    IdleChanged,
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

A = "https://a.example/article?utm=x#top"
A_KEY = "https://a.example/article"
B = "https://b.example/post"
B_KEY = "https://b.example/post"
SONG = "https://music.example/song/1"
OFF = "https://off.example/page"
ALL = SitePolicy(count_all=True)
ONLY_A_B = SitePolicy(sites=frozenset({"a.example", "b.example", "music.example"}))

NORMAL = [50, 96, 138, 176, 210]
AUDIO = [140, 400, 880, 1480, 2460, 3660]
DAY = 86400


# ------------------------------------------------------------------ helpers


def front(
    at: float, url: str | None = A, tab: int = 1, window: int = 1, incognito: bool = False
) -> list[Signal]:
    """The user focuses ``window`` and selects ``tab`` showing ``url``."""
    return [
        WindowFocusChanged(at=at, window_id=window),
        TabActivated(at=at, tab_id=tab, window_id=window, url=url, incognito=incognito),
    ]


def beats(start: float, stop: float, every: float = 10) -> list[Signal]:
    """User activity every ``every`` seconds from ``start`` to ``stop`` inclusive."""
    count = round((stop - start) / every)
    return [UserActivity(at=start + i * every) for i in range(count + 1)]


def audible(
    at: float,
    url: str = SONG,
    tab: int = 7,
    window: int = 2,
    on: bool = True,
    muted: bool = False,
    incognito: bool = False,
) -> AudibleChanged:
    return AudibleChanged(
        at=at, tab_id=tab, window_id=window, url=url, incognito=incognito, audible=on, muted=muted
    )


def play(engine: AttentionEngine, signals: Iterable[Signal], until: float) -> list[Decision]:
    """Feed ``signals`` in time order (stable for equal times), then advance to ``until``."""
    ordered = sorted(signals, key=lambda s: s.at)
    assert all(s.at <= until for s in ordered), "script runs past 'until'"
    decisions: list[Decision] = []
    for signal in ordered:
        decisions += engine.handle(signal)
    decisions += engine.advance(until)
    return decisions


def times(decisions: Sequence[Decision], url: str | None = None) -> list[float]:
    return [d.at for d in decisions if url is None or d.url == url]


# ------------------------------------------------------------ thresholds


def test_normal_page_crosses_documented_thresholds_exactly() -> None:
    engine = AttentionEngine(ALL)
    decisions = play(engine, front(0) + beats(10, 300), until=300)
    assert times(decisions) == NORMAL
    assert [d.ordinal for d in decisions] == [1, 2, 3, 4, 5]
    assert [d.threshold for d in decisions] == NORMAL
    assert {(d.url, d.reason, d.audio) for d in decisions} == {(A_KEY, "threshold", False)}
    assert engine.attention(A) == 300
    assert engine.next_threshold(A) == 210 + DAY


def test_daily_repeat_after_last_normal_threshold() -> None:
    start = PageCounter(A_KEY, attention=210 + DAY - 30, next_index=5)
    engine = AttentionEngine(ALL, counters=[start], start=1000)
    decisions = play(engine, front(1000) + beats(1010, 1100), until=1100)
    assert times(decisions) == [1030]
    assert decisions[0].ordinal == 6
    assert engine.next_threshold(A) == 210 + 2 * DAY


def test_audio_page_uses_audio_thresholds_and_exact_times_in_one_jump() -> None:
    engine = AttentionEngine(ALL)
    engine.handle(audible(0))
    # One single advance over every threshold: each decision still carries the
    # exact virtual time at which it was crossed.
    decisions = engine.advance(3660 + DAY + 5)
    assert times(decisions) == [*AUDIO, 3660 + DAY]
    assert all(d.audio and d.url == SONG for d in decisions)
    status = engine.status(SONG)
    assert status.is_audio
    assert status.audio == 3660 + DAY + 5
    assert status.flattrs == 7


def test_page_becomes_audio_page_after_20_seconds_of_audio() -> None:
    engine = AttentionEngine(ALL)
    # Front tab, user active; the page plays audio only from 5 s to 24 s (19 s).
    signals = [
        *front(0, url=SONG),
        *beats(10, 60),
        audible(5, tab=1, window=1),
        audible(24, tab=1, window=1, on=False),
    ]
    decisions = play(engine, signals, until=60)
    assert times(decisions) == [50]  # still a normal page
    assert not engine.status(SONG).is_audio

    engine2 = AttentionEngine(ALL)
    signals[-1] = audible(25, tab=1, window=1, on=False)  # 20 s of audio
    decisions = play(engine2, signals, until=60)
    assert decisions == []  # audio page: first threshold is 140, not 50
    assert engine2.status(SONG).is_audio
    assert engine2.next_threshold(SONG) == 140


def test_manual_flattr_jumps_to_next_threshold() -> None:
    engine = AttentionEngine(ALL)
    signals = [*front(0), *beats(10, 100), ManualFlattr(at=20, url=A)]
    decisions = play(engine, signals, until=100)
    manual, *rest = decisions
    assert (manual.at, manual.reason, manual.ordinal, manual.threshold) == (20, "manual", 1, 50)
    assert manual.url == A_KEY
    # Attention jumped 20 -> 50 at t=20, so 96 is reached 46 s later.
    assert times(rest) == [66]
    assert rest[0].ordinal == 2


def test_manual_flattr_counts_even_without_opt_in() -> None:
    engine = AttentionEngine()  # nothing opted in: the click itself is the consent
    [decision] = engine.handle(ManualFlattr(at=3, url=OFF))
    assert (decision.reason, decision.url, decision.ordinal) == ("manual", OFF, 1)
    assert engine.next_threshold(OFF) == 96


# --------------------------------------------------------- what stops accrual


def test_idle_stops_and_active_resumes() -> None:
    engine = AttentionEngine(ALL)
    signals = [
        *front(0),
        *beats(10, 100),  # activity relayed while idle must not count
        IdleChanged(at=30, state="idle"),
        IdleChanged(at=100, state="active"),
    ]
    decisions = play(engine, signals, until=100)
    assert engine.attention(A) == 30
    assert decisions == []
    decisions = play(engine, beats(110, 120), until=125)
    assert times(decisions) == [120]


def test_locked_screen_stops_accrual() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0), *beats(10, 100), IdleChanged(at=12, state="locked")], until=100)
    assert engine.attention(A) == 12


def test_window_blur_stops_and_focus_resumes() -> None:
    engine = AttentionEngine(ALL)
    signals = [
        *front(0),
        *beats(10, 140),
        WindowFocusChanged(at=30, window_id=None),
        WindowFocusChanged(at=100, window_id=1),
    ]
    decisions = play(engine, signals, until=140)
    assert times(decisions) == [120]
    assert engine.attention(A) == 70


def test_other_window_focused_does_not_count_the_first() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0), *beats(10, 100), WindowFocusChanged(at=40, window_id=9)], until=100)
    assert engine.attention(A) == 40


def test_tab_switch_splits_attention() -> None:
    engine = AttentionEngine(ALL)
    signals = [
        *front(0, url=A, tab=1),
        *beats(10, 100),
        TabActivated(at=30, tab_id=2, window_id=1, url=B, incognito=False),
        TabActivated(at=70, tab_id=1, window_id=1, url=A, incognito=False),
    ]
    decisions = play(engine, signals, until=100)
    assert engine.attention(A) == 60
    assert engine.attention(B) == 40
    assert times(decisions, A_KEY) == [90]
    assert times(decisions, B_KEY) == []


def test_url_change_in_front_tab_moves_attention() -> None:
    engine = AttentionEngine(ALL)
    signals = [
        *front(0, url=A),
        *beats(10, 100),
        UrlChanged(at=25, tab_id=1, window_id=1, url=B, incognito=False),
    ]
    play(engine, signals, until=100)
    assert (engine.attention(A), engine.attention(B)) == (25, 75)


def test_activity_window_expires_after_15_seconds() -> None:
    engine = AttentionEngine(ALL)
    assert play(engine, front(0), until=100) == []
    assert engine.attention(A) == 15
    assert engine.next_wakeup() is None
    decisions = play(engine, beats(100, 130), until=200)
    # 15 + 35 = 50 at t=135; the last beat at 130 keeps the window open to 145.
    assert times(decisions) == [135]
    assert engine.attention(A) == 60


def test_background_load_does_not_open_window_but_front_load_does() -> None:
    engine = AttentionEngine(ALL)
    play(engine, front(0), until=40)
    assert engine.attention(A) == 15
    bg = LoadFinished(at=40, tab_id=5, window_id=1, url=B, incognito=False)
    play(engine, [bg], until=60)
    assert engine.attention(A) == 15
    fg = LoadFinished(at=60, tab_id=1, window_id=1, url=A, incognito=False)
    play(engine, [fg], until=100)
    assert engine.attention(A) == 30


def test_non_http_front_tab_counts_nothing() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0, url="chrome://newtab/"), *beats(10, 100)], until=100)
    assert engine.counters() == []


# ------------------------------------------------------------------- audio


def test_audible_background_tab_counts_while_idle_and_unfocused() -> None:
    engine = AttentionEngine(ALL)
    signals = [IdleChanged(at=0, state="idle"), WindowFocusChanged(at=0, window_id=None)]
    play(engine, [*signals, audible(0)], until=100)
    assert engine.attention(SONG) == 100


def test_muted_or_closed_audible_tab_stops_counting() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [audible(0), audible(30, muted=True), audible(50, muted=False)], until=60)
    assert engine.attention(SONG) == 40
    play(engine, [TabClosed(at=70, tab_id=7)], until=200)
    assert engine.attention(SONG) == 50


def test_front_tab_that_is_also_audible_accrues_once() -> None:
    engine = AttentionEngine(ALL)
    signals = [*front(0, url=SONG, tab=3), *beats(10, 40), audible(0, tab=3, window=1)]
    play(engine, signals, until=40)
    assert engine.attention(SONG) == 40


# ---------------------------------------------------------- who is counted


def test_sites_not_opted_in_are_never_counted() -> None:
    engine = AttentionEngine(ONLY_A_B)
    signals = [*front(0, url=OFF), *beats(10, 500), audible(0, url="https://off.example/radio")]
    assert play(engine, signals, until=500) == []
    assert engine.attention(OFF) == 0
    assert engine.to_record()["pages"] == []  # not even stored
    assert not engine.status(OFF).counted


def test_default_policy_counts_nothing() -> None:
    engine = AttentionEngine()
    assert play(engine, [*front(0), *beats(10, 300), audible(0)], until=300) == []
    assert engine.counters() == []


def test_opted_in_site_includes_www_but_not_other_subdomains() -> None:
    engine = AttentionEngine(SitePolicy(sites=frozenset({"a.example"})))
    signals = [*front(0, url="https://www.a.example/x"), *beats(10, 60)]
    assert times(play(engine, signals, until=60)) == [50]
    other = AttentionEngine(SitePolicy(sites=frozenset({"a.example"})))
    signals = [*front(0, url="https://blog.a.example/x"), *beats(10, 60)]
    assert play(other, signals, until=60) == []


def test_incognito_never_counted_nor_kept() -> None:
    engine = AttentionEngine(ALL)
    signals = [*front(0, incognito=True), *beats(10, 500), audible(0, incognito=True)]
    assert play(engine, signals, until=500) == []
    assert engine.counters() == []
    assert engine.counting() == frozenset()


def test_policy_change_applies_from_its_time() -> None:
    engine = AttentionEngine()
    play(engine, [*front(0), *beats(10, 20)], until=20)
    assert engine.attention(A) == 0
    engine.set_policy(20, ONLY_A_B)
    decisions = play(engine, beats(30, 100), until=100)
    assert times(decisions) == [70]


# ------------------------------------------------------- restart, records


def test_restart_keeps_counters() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0), *beats(10, 30), ManualFlattr(at=5, url=B)], until=40)
    play(engine, [audible(40)], until=70)  # the window closed at 45
    record = json.loads(json.dumps(engine.to_record()))  # survives a JSON/SQLite trip

    # A new process: a different clock origin, no browser state.
    revived = AttentionEngine.from_record(record, ALL, start=5000)
    assert revived.counters() == engine.counters()
    assert revived.attention(A) == 45
    assert revived.status(SONG).is_audio
    assert revived.next_threshold(B) == 96
    decisions = play(revived, [*front(5000), *beats(5010, 5020)], until=5030)
    assert times(decisions) == [5005]  # the 5 s still missing to 50


def test_counter_already_past_its_marks_resolves_when_next_attended() -> None:
    # E.g. a row written before the thresholds changed: it must fire at once,
    # at the current time, never at a time in the past.
    rows = [PageCounter(A_KEY, attention=60), PageCounter(SONG, audio=25, attention=150)]
    engine = AttentionEngine(ALL, counters=rows, start=1000)
    decisions = play(engine, [*front(1000), audible(1000)], until=1001)
    assert [(d.url, d.at, d.threshold) for d in decisions] == [
        (A_KEY, 1000, 50),
        (SONG, 1000, 140),
    ]
    assert engine.status(SONG).is_audio
    assert engine.attention(A) == 61


def test_take_dirty_returns_changed_rows_once() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0), *beats(10, 20)], until=20)
    assert [c.url for c in engine.take_dirty()] == [A_KEY]
    assert engine.take_dirty() == []
    engine.advance(25)
    assert [(c.url, c.attention) for c in engine.take_dirty()] == [(A_KEY, 25)]


def test_forget_drops_counters() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0), audible(0)], until=10)
    engine.forget([SONG])
    assert [c.url for c in engine.counters()] == [A_KEY]
    engine.forget()
    assert engine.counters() == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"version": 2, "pages": []}, "version must be 1"),
        ({"version": 1, "pages": {}}, "'pages' must be a list"),
        ({"version": 1, "pages": [{"url": A_KEY}]}, "misses field"),
        (
            {"version": 1, "pages": [_row := {"url": A, "attention_s": 1, "audio_s": 0,
                                              "is_audio": False, "next_index": 0}]},
            "not normalized",
        ),
        ({"version": 1, "pages": [{**_row, "url": "ftp://x/"}]}, "not countable"),
        ({"version": 1, "pages": [{**_row, "url": A_KEY, "attention_s": -1}]}, ">= 0"),
        ({"version": 1, "pages": [{**_row, "url": A_KEY, "audio_s": "3"}]}, "must be a number"),
        ({"version": 1, "pages": [{**_row, "url": A_KEY, "is_audio": 2}]}, "boolean"),
        ({"version": 1, "pages": [{**_row, "url": A_KEY, "next_index": -1}]}, "integer >= 0"),
    ],
)
def test_bad_records_are_refused(record: dict[str, object], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        AttentionEngine.from_record(record)


def test_record_accepts_sqlite_integers_for_booleans() -> None:
    row = {"url": A_KEY, "attention_s": 12, "audio_s": 21.5, "is_audio": 1, "next_index": 0}
    counter = PageCounter.from_record(row)
    assert counter.is_audio is True
    assert counter.next_threshold == 140


# ------------------------------------------------------------- scale, clock


def test_scale_shrinks_thresholds_and_window() -> None:
    engine = AttentionEngine(ALL, scale=0.01)
    decisions = play(engine, front(0) + beats(0.1, 2.9, every=0.1), until=3.0)
    assert times(decisions) == pytest.approx([t / 100 for t in NORMAL])
    assert engine.attention(A) == pytest.approx(300)  # counters stay in nominal seconds

    quiet = AttentionEngine(ALL, scale=0.01)
    play(quiet, front(0), until=1.0)
    assert quiet.attention(A) == pytest.approx(15)  # the window closed after 0.15 s


def test_scaled_audio_page() -> None:
    engine = AttentionEngine(ALL, scale=0.01)
    engine.handle(audible(0))
    assert times(engine.advance(40)) == pytest.approx([t / 100 for t in AUDIO])


@pytest.mark.timeout(10)
@pytest.mark.parametrize("scale", [0.01, 0.013, 1 / 3])
@pytest.mark.parametrize("start", [12345.678, 987654.321])
def test_scaled_on_a_large_monotonic_clock(scale: float, start: float) -> None:
    # Real monotonic clocks start far from 0, where (threshold - attention) * scale
    # rounds; the engine must still cross every threshold once and terminate.
    engine = AttentionEngine(ALL, scale=scale, start=start)
    engine.handle(audible(start))
    decisions = engine.advance(start + 4000 * scale)
    assert [d.threshold for d in decisions] == AUDIO
    assert [(d.at - start) / scale for d in decisions] == pytest.approx(AUDIO)
    signals = [*front(start), *beats(start + 10 * scale, start + 300 * scale, every=10 * scale)]
    decisions = play(AttentionEngine(ALL, scale=scale, start=start), signals, start + 300 * scale)
    assert [(d.at - start) / scale for d in decisions] == pytest.approx(NORMAL)


@pytest.mark.parametrize("text", ["0", "-1", "2", "nan", "inf", "fast"])
def test_parse_scale_rejects(text: str) -> None:
    with pytest.raises(AttentionError, match="attention scale"):
        parse_scale(text)


def test_parse_scale_accepts() -> None:
    assert parse_scale("0.01") == 0.01
    with pytest.raises(AttentionError, match="got 0"):
        AttentionEngine(scale=0)


def test_time_cannot_go_backwards() -> None:
    engine = AttentionEngine(ALL, start=10)
    with pytest.raises(ClockError, match="5 < engine time 10"):
        engine.advance(5)
    engine.advance(20)
    with pytest.raises(ClockError):
        engine.handle(UserActivity(at=19))


def test_next_wakeup_points_at_next_change() -> None:
    engine = AttentionEngine(ALL)
    assert engine.next_wakeup() is None
    play(engine, front(0), until=0)
    assert engine.next_wakeup() == 15  # the window closes
    play(engine, beats(10, 40), until=40)
    assert engine.next_wakeup() == 50  # first threshold before the window (55) closes
    play(engine, [audible(40)], until=40)
    assert engine.next_wakeup() == 50
    engine.advance(50)
    assert engine.next_wakeup() == 55

    # The front tab is also the audible one: the window closing changes nothing,
    # the next change is the page becoming an audio page at 20 s.
    both = AttentionEngine(ALL)
    play(both, [*front(0, url=SONG, tab=3), audible(0, tab=3, window=1)], until=0)
    assert both.next_wakeup() == 20


def test_reset_forgets_browser_state_but_keeps_counters() -> None:
    engine = AttentionEngine(ALL)
    play(engine, [*front(0), *beats(10, 30), audible(0)], until=30)
    play(engine, [Reset(at=30)], until=100)
    assert (engine.attention(A), engine.attention(SONG)) == (30, 30)
    assert engine.counting() == frozenset()


# ------------------------------------------------------------ determinism


_script = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=400),
        st.sampled_from(["front_a", "front_b", "beat", "blur", "idle", "active", "audio", "mute"]),
    ),
    max_size=40,
)


def _signal(at: int, kind: str) -> Signal:
    match kind:
        case "front_a":
            return TabActivated(at=at, tab_id=1, window_id=1, url=A, incognito=False)
        case "front_b":
            return TabActivated(at=at, tab_id=2, window_id=1, url=B, incognito=False)
        case "blur":
            return WindowFocusChanged(at=at, window_id=None)
        case "idle":
            return IdleChanged(at=at, state="idle")
        case "active":
            return IdleChanged(at=at, state="active")
        case "audio":
            return audible(at)
        case "mute":
            return audible(at, muted=True)
    return UserActivity(at=at)


@settings(max_examples=60, deadline=None)
@given(_script, st.lists(st.integers(min_value=1, max_value=500), max_size=10))
def test_extra_advances_change_nothing(script: list[tuple[int, str]], probes: list[int]) -> None:
    """Advancing in small steps gives the same decisions as one jump."""
    signals: list[Signal] = [WindowFocusChanged(at=0, window_id=1)]
    signals += [_signal(at, kind) for at, kind in sorted(script, key=lambda p: p[0])]
    one = AttentionEngine(ALL)
    jumped = play(one, signals, until=500)

    other = AttentionEngine(ALL)
    stepped: list[Decision] = []
    for signal in signals:
        for probe in sorted(p for p in probes if other.now <= p <= signal.at):
            stepped += other.advance(probe)
        stepped += other.handle(signal)
    stepped += other.advance(500)

    assert [(d.url, d.ordinal) for d in stepped] == [(d.url, d.ordinal) for d in jumped]
    assert [d.at for d in stepped] == pytest.approx([d.at for d in jumped])
    for mine, theirs in zip(other.counters(), one.counters(), strict=True):
        assert mine.url == theirs.url
        assert mine.attention == pytest.approx(theirs.attention)
        assert mine.next_index == theirs.next_index
