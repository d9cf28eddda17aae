"""Group commit in the real host process: no reply before its commit.

A burst of ``flattr`` requests is written to the host all at once (the host groups
what it finds in its input); after k replies the host is killed with SIGKILL, and
every URL of those k replies must be in the store: a reply is only written once
the group holding its request is committed (docs/protocol.md, docs/architecture.md).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from typing import Any

from flattr_testing.host import frame
from tests.integration.conftest import Delivery

REQUESTS = 3000
PER_REQUEST = 2


def stored_urls(delivery: Delivery) -> set[str]:
    conn = sqlite3.connect(delivery.home / "host.db")
    try:
        return {r[0] for r in conn.execute("SELECT url FROM queue")}
    finally:
        conn.close()


def test_sigkill_after_k_replies_keeps_every_url_of_those_replies(
        delivery: Delivery) -> None:
    host = delivery.start(sign_in=False, FLATTR_LOG_LEVEL="info")
    urls = {n: [f"https://group.example/{n}/{i}" for i in range(PER_REQUEST)]
            for n in range(REQUESTS)}
    data = b"".join(frame({"id": 1000 + n, "type": "flattr", "urls": urls[n]})
                    for n in range(REQUESTS))

    def write() -> None:
        try:
            host.send_raw(data)  # larger than the pipe: the host reads while it is written
        except (BrokenPipeError, ValueError):
            pass  # killed before it read everything

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    kill_after = REQUESTS // 3
    replies: list[dict[str, Any]] = []
    while len(replies) < kill_after:
        message = host.recv(timeout=60)
        if "event" not in message:
            replies.append(message)
    host.proc.send_signal(signal.SIGKILL)
    host.wait(10)
    writer.join(10)

    assert [r["id"] for r in replies] == [1000 + n for n in range(kill_after)]
    assert all(r.get("result") == {"queued": PER_REQUEST} for r in replies), replies[:3]
    stored = stored_urls(delivery)
    missing = [url for n in range(kill_after) for url in urls[n] if url not in stored]
    assert missing == []
    # Whatever else is stored belongs to whole requests (a group is all or nothing).
    for n in range(kill_after, REQUESTS):
        assert len(set(urls[n]) & stored) in (0, PER_REQUEST)
