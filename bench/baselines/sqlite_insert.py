"""Raw SQLite inserts at the host queue's durability: the ceiling for durable enqueue.

WAL journal, ``synchronous=FULL``, one transaction committed per
request-equivalent: ``--batch 1`` commits every URL, ``--batch 100`` commits every
100 URLs, as the host must before it acknowledges a ``flattr`` request. The table
holds what a queue row minimally needs (url, state, time). Only the inserts and
commits are timed, not interpreter start-up or opening the database.

Prints one JSON line: ``{"seconds": <float>, "rows": <int>, "batch": <int>}``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL
)
"""


def make_urls(count: int, prefix: str) -> list[str]:
    """Return ``count`` distinct URLs shaped like the ones the harness sends the host."""
    return [f"https://example.com/{prefix}/item-{i:06d}" for i in range(count)]


def insert_urls(db_path: Path, urls: list[str], batch: int) -> float:
    """Insert ``urls`` into a fresh queue table, committing every ``batch`` rows.

    Returns the seconds spent inserting and committing (connection set-up excluded).
    Raises ValueError when ``batch`` is below 1.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(SCHEMA)
        start = time.perf_counter()
        for first in range(0, len(urls), batch):
            now = int(time.time() * 1000)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO queue (url, state, created_at) VALUES (?, 'pending', ?)",
                [(url, now) for url in urls[first : first + batch]],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        (rows,) = conn.execute("SELECT count(*) FROM queue").fetchone()
        if rows != len(urls):
            raise RuntimeError(f"expected {len(urls)} rows, found {rows}")
        return elapsed
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: insert ``--count`` URLs into ``--db`` in batches of ``--batch``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--prefix", default="sqlite")
    args = parser.parse_args(argv)
    urls = make_urls(args.count, args.prefix)
    seconds = insert_urls(args.db, urls, args.batch)
    print(json.dumps({"seconds": seconds, "rows": len(urls), "batch": args.batch}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
