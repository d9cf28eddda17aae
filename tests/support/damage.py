"""Damage a host store the way a bad disk would: whole pages overwritten with noise."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def queue_leaf_pages(db: Path) -> list[int]:
    """The queue table's leaf pages, after folding the WAL into the file."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return [int(r[0]) for r in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'queue' AND pagetype = 'leaf' "
            "ORDER BY pageno")]
    finally:
        conn.close()


def garble(db: Path, pages: list[int]) -> None:
    """Overwrite ``pages`` (1-based) of the database file with random bytes."""
    conn = sqlite3.connect(db)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as handle:
        for page in pages:
            handle.seek((page - 1) * size)
            handle.write(os.urandom(size))
    # A commit by another connection: every open connection drops its page cache
    # at its next transaction and reads the pages from the file, as after a
    # restart (else pages it had cached would hide the damage until evicted).
    conn = sqlite3.connect(db, timeout=30)
    conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('test.bump', '1')")
    conn.commit()
    conn.close()
