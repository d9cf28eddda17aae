"""Attention rows in the host's store: counters, opted-in sites, "count every site".

Plain SQL over one connection (store migration 3, docs/attention.md#storage). It
imports nothing heavy, so ``hello`` can ask :func:`is_active` without loading the
engine. Counter rows are browsing history: nothing here logs.

Several host processes share the store. Two rules keep them consistent:

- :func:`upsert_counters` merges with ``MAX`` per column, so a process holding an
  older copy of a counter never lowers what another process wrote;
- every deletion (``flattr-host attention clear``, pruning) bumps the
  ``attention_generation`` in ``kv``; a running host that sees a new generation
  drops the counters that are gone from its memory (:func:`generation`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping
    from typing import Any

COUNT_ALL_KEY = "attention_count_all"
GENERATION_KEY = "attention_generation"
#: Columns of attention_page besides updated_at, as PageCounter.to_record() names them.
COLUMNS = ("url", "attention_s", "audio_s", "is_audio", "next_index")


#: The extension's heartbeat at scale 1: well inside the 15 s activity window.
HEARTBEAT_S = 10.0
MIN_HEARTBEAT_MS = 50


def heartbeat_ms(scale: float) -> int:
    """How often the extension relays ``activity`` while the user is active.

    Scaled like the activity window, so the window stays open between heartbeats
    with ``FLATTR_ATTENTION_SCALE`` too.
    """
    return max(MIN_HEARTBEAT_MS, round(HEARTBEAT_S * scale * 1000))


def relay(conn: sqlite3.Connection, scale: float) -> dict[str, Any]:
    """What the extension needs to relay signals: ``{active, heartbeatMs}`` (hello)."""
    return {"active": is_active(conn), "heartbeatMs": heartbeat_ms(scale)}


def is_active(conn: sqlite3.Connection) -> bool:
    """True when any site counts (a site opted in, or "count every site").

    The extension relays browser signals only while this is true: by default no
    URL leaves the browser for attention.
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM attention_site) "
        "OR EXISTS (SELECT 1 FROM kv WHERE key = ? AND value = '1')",
        (COUNT_ALL_KEY,),
    ).fetchone()
    return bool(row[0])


def read_settings(conn: sqlite3.Connection) -> tuple[bool, list[str]]:
    """(count every site, opted-in site keys sorted)."""
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (COUNT_ALL_KEY,)).fetchone()
    sites = [str(r[0]) for r in conn.execute("SELECT site FROM attention_site ORDER BY site")]
    return (row is not None and row[0] == "1"), sites


def set_site(conn: sqlite3.Connection, site: str, enabled: bool, now: float) -> None:
    """Opt ``site`` in or out (idempotent)."""
    if enabled:
        conn.execute(
            "INSERT INTO attention_site (site, enabled_at) VALUES (?, ?) "
            "ON CONFLICT (site) DO NOTHING",
            (site, now),
        )
    else:
        conn.execute("DELETE FROM attention_site WHERE site = ?", (site,))


def set_count_all(conn: sqlite3.Connection, enabled: bool) -> None:
    conn.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (COUNT_ALL_KEY, "1" if enabled else "0"),
    )


def generation(conn: sqlite3.Connection) -> int:
    """The clear generation: changes whenever counter rows are deleted."""
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (GENERATION_KEY,)).fetchone()
    return 0 if row is None else int(row[0])


def _bump_generation(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO kv (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (GENERATION_KEY,),
    )


def load_counters(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every counter row as a dict with the keys of :data:`COLUMNS` and ``updated_at``."""
    keys = (*COLUMNS, "updated_at")
    rows = conn.execute(f"SELECT {', '.join(keys)} FROM attention_page ORDER BY url")  # noqa: S608
    return [dict(zip(keys, row, strict=True)) for row in rows]


def stored_next_index(conn: sqlite3.Connection, urls: Iterable[str]) -> dict[str, int]:
    """``next_index`` of each stored URL among ``urls`` (thresholds already queued)."""
    found: dict[str, int] = {}
    for url in urls:
        row = conn.execute(
            "SELECT next_index FROM attention_page WHERE url = ?", (url,)
        ).fetchone()
        if row is not None:
            found[url] = int(row[0])
    return found


def upsert_counters(conn: sqlite3.Connection, records: Iterable[Mapping[str, Any]],
                    now: float) -> None:
    """Write counter records (``PageCounter.to_record()``), merging with ``MAX``."""
    conn.executemany(
        "INSERT INTO attention_page "
        "(url, attention_s, audio_s, is_audio, next_index, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET "
        "attention_s = MAX(attention_s, excluded.attention_s), "
        "audio_s = MAX(audio_s, excluded.audio_s), "
        "is_audio = MAX(is_audio, excluded.is_audio), "
        "next_index = MAX(next_index, excluded.next_index), "
        "updated_at = excluded.updated_at",
        [
            (r["url"], float(r["attention_s"]), float(r["audio_s"]), int(bool(r["is_audio"])),
             int(r["next_index"]), now)
            for r in records
        ],
    )


def delete_counters(conn: sqlite3.Connection, urls: Iterable[str] | None = None) -> list[str]:
    """Delete the rows of ``urls`` (all when None); returns the URLs deleted."""
    if urls is None:
        gone = [str(r[0]) for r in conn.execute("SELECT url FROM attention_page")]
        conn.execute("DELETE FROM attention_page")
    else:
        gone = []
        for url in urls:
            if conn.execute("DELETE FROM attention_page WHERE url = ?", (url,)).rowcount:
                gone.append(url)
    if gone:
        _bump_generation(conn)
    return gone


def prune(conn: sqlite3.Connection, older_than: float) -> list[str]:
    """Delete counters not updated since ``older_than`` (epoch s); returns their URLs."""
    old = [
        str(r[0])
        for r in conn.execute("SELECT url FROM attention_page WHERE updated_at < ?", (older_than,))
    ]
    return delete_counters(conn, old) if old else []
