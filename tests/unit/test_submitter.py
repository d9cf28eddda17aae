"""The submitter thread in-process: housekeeping and sleeping."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flattr_host.core.config import Config
from flattr_host.core.logs import Logger
from flattr_host.delivery import submitter as submitter_mod
from flattr_host.storage.parts import Parts
from flattr_host.storage.queue import Queue
from flattr_host.storage.store import Store


def signed_in_with(tmp_path: Path, urls: list[str], **settings: Any) -> tuple[Config, Logger]:
    """A signed-in store in ``tmp_path`` with ``urls`` queued, due now; the config
    sends at once and retries without backoff (``settings`` add to it)."""
    from flattr_host.core.session import TokenStored
    from flattr_host.storage.state import StateStore
    from flattr_host.storage.token_store import TokenStore

    config = Config(home=str(tmp_path), submit_delay_s=0.0, retry_base_s=0.0,
                    retry_cap_s=0.0, **settings)
    log = Logger(config.log_dir, "info")
    with Store(config.db_path, log) as store:
        StateStore(store, TokenStore(store, config.key_path, log)).apply(
            TokenStored(True), token="tok-123")
        Queue(store).enqueue(urls, now=time.time())
    return config, log


def test_long_running_host_expires_old_pending_items(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submitter_mod, "HOUSEKEEPING_S", 0.3)
    config = Config(home=str(tmp_path), api_base="http://127.0.0.1:9",
                    pending_expiry_s=0.5, submit_delay_s=0.0)
    log = Logger(config.log_dir, "debug")
    with Store(config.db_path, log) as store:
        Queue(store).enqueue(["https://old.example/"], now=time.time())
    changed = threading.Event()
    seen: list[dict[str, Any]] = []

    def on_change(parts: Parts) -> None:
        seen.append(parts.queue.counts())
        if parts.queue.counts()["expired"]:
            changed.set()

    worker = submitter_mod.Submitter(config, log, on_change)
    worker.start()
    try:
        # Signed out: nothing is sent; the item only expires, found by housekeeping
        # after start-up (it was not yet 0.5 s old then).
        assert changed.wait(5), seen
    finally:
        assert worker.stop(5)
    assert seen[-1]["expired"] == 1 and seen[-1]["pending"] == 0
    assert "queue pruned" in (tmp_path / "logs" / "host.log").read_text()


class _FlakyClient:
    """An API client whose first call fails with an error no code path expects."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def post_bulk(self, token: str, urls: list[str]) -> Any:
        from flattr_host.delivery.api import Response

        self.calls.append(urls)
        if len(self.calls) == 1:
            raise RuntimeError("unexpected failure inside the client")
        body = {"results": [{"url": u, "status": "ok", "thing_id": 1} for u in urls]}
        import json

        return Response(200, {}, json.dumps(body).encode())

    def close(self) -> None:
        pass


def test_an_internal_error_does_not_stop_delivery(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for a client bug: the real client never raises RuntimeError."""
    monkeypatch.setattr(submitter_mod, "ERROR_PAUSE_S", 0.1)
    config, log = signed_in_with(tmp_path, ["https://a.example/"], lease_s=0.2)
    delivered = threading.Event()

    def on_change(parts: Parts) -> None:
        if parts.queue.counts()["done"] == 1:
            delivered.set()

    client = _FlakyClient()
    worker = submitter_mod.Submitter(config, log, on_change, client_factory=lambda: client)
    worker.start()
    try:
        assert delivered.wait(10)
    finally:
        assert worker.stop(5)
    assert len(client.calls) == 2
    text = (tmp_path / "logs" / "host.log").read_text()
    assert "submitter error; trying again shortly" in text and "RuntimeError" in text


class _CountingClient:
    """Answers every batch with a 200 and records each post and close, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def post_bulk(self, token: str, urls: list[str]) -> Any:
        from flattr_host.delivery.api import Response

        self.events.append("post")
        return Response(200, {}, b"")

    def close(self) -> None:
        self.events.append("close")


def test_the_connection_is_closed_when_nothing_is_due_any_more(tmp_path: Path) -> None:
    """After a burst, an empty queue closes the kept-alive connection (it would not
    be reused after IDLE_REUSE_S anyway); between batches of a burst it stays open."""
    config, log = signed_in_with(tmp_path, [f"https://a.example/{n}" for n in range(5)],
                                 lease_s=5.0, batch_max=2)
    client = _CountingClient()
    delivered = threading.Event()

    def on_change(parts: Parts) -> None:
        if parts.queue.counts()["done"] == 5:
            delivered.set()

    worker = submitter_mod.Submitter(config, log, on_change, client_factory=lambda: client)
    worker.start()
    try:
        assert delivered.wait(10)
        deadline = time.monotonic() + 10
        while client.events[-1:] != ["close"]:  # it goes to sleep after the last batch
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        assert worker.stop(5)
    # 2 + 2 + 1 URLs on one connection, then closed once the queue is empty.
    assert client.events[:4] == ["post", "post", "post", "close"]


class _StatusClient:
    """Answers each batch with the next status of ``statuses`` (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.posts: list[list[str]] = []

    def post_bulk(self, token: str, urls: list[str]) -> Any:
        from flattr_host.delivery.api import Response

        self.posts.append(list(urls))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Response(status, {}, b"")

    def close(self) -> None:
        pass


def test_an_answer_that_cannot_be_read_is_decided_by_its_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for a bug in reading an answer (classify raising): a 503 is sent
    again, the 200 that follows is delivered once and never sent again."""
    def broken(*_args: Any) -> Any:
        raise RuntimeError("reading the answer failed")

    monkeypatch.setattr(submitter_mod, "classify", broken)
    config, log = signed_in_with(tmp_path, ["https://a.example/"], lease_s=5.0)
    delivered = threading.Event()
    counts: list[dict[str, Any]] = []

    def on_change(parts: Parts) -> None:
        counts.append(parts.queue.counts())
        if counts[-1]["done"] == 1:
            delivered.set()

    client = _StatusClient(503, 200)
    worker = submitter_mod.Submitter(config, log, on_change, client_factory=lambda: client)
    worker.start()
    try:
        assert delivered.wait(10)
        time.sleep(0.2)  # room for a wrong second send of the delivered batch
    finally:
        assert worker.stop(5)
    assert client.posts == [["https://a.example/"], ["https://a.example/"]]
    assert counts[-1]["done"] == 1 and counts[-1]["pending"] == 0
    text = (tmp_path / "logs" / "host.log").read_text()
    assert text.count("reading the API's answer failed") == 2
    assert "submitter error" not in text  # handled, not a crash of the thread
