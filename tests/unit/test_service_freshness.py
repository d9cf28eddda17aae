"""The State a service answers reflects every commit on the store, by anyone, at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flattr_host.core.config import Config
from flattr_host.core.logs import Logger
from flattr_host.core.session import RateLimited, SubscriptionSet, TokenStored
from flattr_host.runtime.service import Service
from flattr_host.storage.queue import Queue
from flattr_host.storage.state import StateStore
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore


def test_writes_of_another_connection_show_in_the_next_state(tmp_path: Path) -> None:
    config = Config(home=str(tmp_path))
    log = Logger(config.log_dir, "debug")
    emitted: list[dict[str, Any]] = []
    # A frozen clock: no amount of "recent check" may excuse a stale answer.
    with Store(config.db_path, log) as mine, Store(config.db_path, log) as other:
        service = Service(config, log, mine, emitted.append, clock=lambda: 1000.0)
        assert service.state()["queue"]["pending"] == 0
        queue = Queue(other)
        for round_ in range(1, 6):
            queue.enqueue([f"https://other.example/{round_}/{i}" for i in range(10)], 1000.0)
            assert service.state()["queue"]["pending"] == 10 * round_
        tokens = TokenStore(other, config.key_path, log)
        states = StateStore(other, tokens)
        states.apply(TokenStored(None), token="t0ken")
        assert service.state()["authenticated"] is True
        states.apply(SubscriptionSet(False))
        assert service.state()["queue"]["paused"] == "subscription_inactive"
        states.apply(SubscriptionSet(True))
        states.apply(RateLimited(2000.0))
        assert service.state()["queue"]["paused"] == "rate_limited"
        assert service.state() is not None and emitted == []


def test_unchanged_store_answers_from_the_cache(tmp_path: Path) -> None:
    config = Config(home=str(tmp_path))
    log = Logger(config.log_dir, "debug")
    with Store(config.db_path, log) as mine:
        service = Service(config, log, mine, lambda _s: None, clock=lambda: 1000.0)
        first = service.state()
        assert service.state() is first  # no re-read, no re-render
