"""Attention rows in the host's store: counters, opted-in sites, "count every site".

Plain SQL over one connection (store migration 3, docs/attention.md#storage). It
imports nothing heavy, so ``hello`` can ask :func:`is_active` without loading the
engine. Counter rows are browsing history: nothing here logs.

Several host processes share the store. Two rules keep them consistent:

- :func:`upsert_counters` merges with ``MAX`` per column, so a process holding an
  older copy of a counter never lowers what another process wrote;
- every deletion (``flattr-host attention clear``, pruning) bumps the
  ``attention_generation`` in ``kv`` and records what it deleted under that
  generation (all counters, a site, or URLs); a running host that sees a new
  generation forgets exactly those pages from its memory (:func:`deletions_since`),
  including pages it counted but had not written yet, and nothing else.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

COUNT_ALL_KEY = "attention_count_all"
GENERATION_KEY = "attention_generation"
#: kv key of what generation N deleted: DELETED_PREFIX + str(N), value a JSON scope
#: ({"all": true}, {"site": key} or {"urls": [...]}).
DELETED_PREFIX = "attention_deleted:"
#: How many deletion records are kept; a host further behind falls back to comparing
#: the rows it knows it wrote with the rows still stored.
KEEP_DELETIONS = 64
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


def _record_deletion(conn: sqlite3.Connection, scope: dict[str, Any]) -> None:
    """Bump the generation and record ``scope`` under it (same transaction)."""
    _bump_generation(conn)
    current = generation(conn)
    conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                 (f"{DELETED_PREFIX}{current}", json.dumps(scope, separators=(",", ":"))))
    for (key,) in conn.execute("SELECT key FROM kv WHERE key GLOB ?",
                               (DELETED_PREFIX + "*",)).fetchall():
        number = _record_number(key)
        if number is None or number <= current - KEEP_DELETIONS:
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))


def _record_number(key: str) -> int | None:
    from flattr_host.core.numbers import whole_number  # not on the hello path

    return whole_number(key[len(DELETED_PREFIX):])


def delete_counters(conn: sqlite3.Connection, urls: Iterable[str] | None = None) -> list[str]:
    """Delete the rows of ``urls`` (all when None); returns the URLs deleted.

    The deletion is recorded even when no row matched: a running host may hold the
    page in memory, not written yet, and must forget it too.
    """
    if urls is None:
        gone = [str(r[0]) for r in conn.execute("SELECT url FROM attention_page")]
        conn.execute("DELETE FROM attention_page")
        _record_deletion(conn, {"all": True})
        return gone
    wanted = list(dict.fromkeys(urls))
    gone = [url for url in wanted
            if conn.execute("DELETE FROM attention_page WHERE url = ?", (url,)).rowcount]
    if wanted:
        _record_deletion(conn, {"urls": wanted})
    return gone


def delete_site(conn: sqlite3.Connection, site: str) -> list[str]:
    """Delete every counter of ``site`` (a key of ``urlnorm.site_of``); returns the URLs."""
    from flattr_host.protocol.urlnorm import site_of  # not on the hello path

    gone = [str(r[0]) for r in conn.execute("SELECT url FROM attention_page")
            if _site(site_of, str(r[0])) == site]
    for url in gone:
        conn.execute("DELETE FROM attention_page WHERE url = ?", (url,))
    _record_deletion(conn, {"site": site})
    return gone


def _site(site_of: Callable[[str], str], url: str) -> str | None:
    try:
        return site_of(url)
    except ValueError:
        return None


def prune(conn: sqlite3.Connection, older_than: float) -> list[str]:
    """Delete counters not updated since ``older_than`` (epoch s); returns their URLs."""
    old = [
        str(r[0])
        for r in conn.execute("SELECT url FROM attention_page WHERE updated_at < ?", (older_than,))
    ]
    return delete_counters(conn, old) if old else []


def stored_urls(conn: sqlite3.Connection) -> set[str]:
    """The URLs that have a counter row."""
    return {str(r[0]) for r in conn.execute("SELECT url FROM attention_page")}


def deletions_since(conn: sqlite3.Connection, known: int) -> Callable[[str], bool] | None:
    """Which URLs the deletions after generation ``known`` removed, as a predicate.

    None when the records no longer reach back to ``known`` (more than
    :data:`KEEP_DELETIONS` deletions since, or a record unreadable).
    """
    current = generation(conn)
    if current <= known:
        return lambda _url: False
    scopes: list[dict[str, Any]] = []
    for number in range(known + 1, current + 1):
        row = conn.execute("SELECT value FROM kv WHERE key = ?",
                           (f"{DELETED_PREFIX}{number}",)).fetchone()
        if row is None:
            return None
        try:
            scope = json.loads(row[0])
        except ValueError:
            return None
        if not isinstance(scope, dict):
            return None
        scopes.append(scope)
    if any(scope.get("all") is True for scope in scopes):
        return lambda _url: True
    urls = {str(u) for scope in scopes for u in scope.get("urls", ()) if isinstance(u, str)}
    sites = {str(scope["site"]) for scope in scopes if isinstance(scope.get("site"), str)}
    if not sites:
        return urls.__contains__
    from flattr_host.protocol.urlnorm import site_of

    return lambda url: url in urls or _site(site_of, url) in sites
