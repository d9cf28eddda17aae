"""The submitter thread in-process: housekeeping and sleeping (issue 4)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flattr_host import submitter as submitter_mod
from flattr_host.config import Config
from flattr_host.logs import Logger
from flattr_host.queue import Queue
from flattr_host.store import Store


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

    def on_change(store: Store, _tokens: object, queue: Queue) -> None:
        seen.append(queue.counts())
        if queue.counts()["expired"]:
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
