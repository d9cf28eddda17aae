"""The State a service answers reflects every commit on the store, by anyone, at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


def test_the_state_after_own_flattrs_equals_a_fresh_read_even_when_others_commit(
        tmp_path: Path) -> None:
    """After a flattr group the service adds what it committed to its cached state
    instead of re-reading it, only when no other connection committed meanwhile
    (data_version seen inside the write transaction): the answer always equals what
    a fresh service reads from the store."""
    from flattr_host.protocol import messages as m

    config = Config(home=str(tmp_path))
    log = Logger(config.log_dir, "debug")
    clock = [1000.0]
    with Store(config.db_path, log) as mine, Store(config.db_path, log) as other, \
            Store(config.db_path, log) as reader:
        service = Service(config, log, mine, lambda _s: None, clock=lambda: clock[0])
        fresh = Service(config, log, reader, lambda _s: None, clock=lambda: clock[0])
        # Signed in, subscribed: the State shows the next due time.
        StateStore(other, TokenStore(other, config.key_path, log)).apply(
            TokenStored(True), token="t0ken")
        service.state()
        for round_ in range(6):
            clock[0] += 1.0
            if round_ % 2:  # another process queues between our requests
                Queue(other).enqueue([f"https://other.example/{round_}"], clock[0] - 500)
            bodies = [m.FlattrUrls((f"https://mine.example/{round_}/{i}",)) for i in range(3)]
            assert service.handle_flattrs(bodies) == [{"queued": 1}] * 3
            fresh.invalidate()
            assert service.state() == fresh.state()
        assert service.state()["queue"]["pending"] == 6 * 3 + 3
        assert service.state()["queue"]["nextAttemptAt"] == int((1002.0 - 500) * 1000)


def test_a_failing_state_read_after_a_committed_group_keeps_its_answers(
        tmp_path: Path) -> None:
    """The group is durable once enqueue returns: a state read failing after it (not
    a damaged store) is logged, the answers say what was stored, the submitter is
    woken, and the next state is read afresh."""
    import sqlite3

    from flattr_host.protocol import messages as m

    config = Config(home=str(tmp_path))
    log = Logger(config.log_dir, "debug")
    woken: list[bool] = []

    class Waker:
        def wake(self, debounce: bool = False) -> None:
            woken.append(debounce)

    with Store(config.db_path, log) as mine:
        service = Service(config, log, mine, lambda _s: None, clock=lambda: 1000.0,
                          waker=Waker())
        reads = service.states.read

        def failing_read() -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        service.states.read = failing_read  # type: ignore[method-assign]
        bodies = [m.FlattrUrls((f"https://mine.example/{i}",)) for i in range(3)]
        assert service.handle_flattrs(bodies) == [{"queued": 1}] * 3
        assert woken == [True]
        service.states.read = reads  # type: ignore[method-assign]
        assert service.state()["queue"]["pending"] == 3
    logged = (Path(config.log_dir) / "host.log").read_text()
    assert "reading the state after a committed flattr group failed" in logged
    assert "disk I/O error" in logged


def test_a_damaged_store_after_a_group_still_reaches_the_message_loop(
        tmp_path: Path) -> None:
    import sqlite3

    from flattr_host.protocol import messages as m

    config = Config(home=str(tmp_path))
    log = Logger(config.log_dir, "debug")
    with Store(config.db_path, log) as mine:
        service = Service(config, log, mine, lambda _s: None, clock=lambda: 1000.0)

        def damaged() -> Any:
            error = sqlite3.DatabaseError("database disk image is malformed")
            error.sqlite_errorcode = 11  # SQLITE_CORRUPT, as SQLite itself sets it
            raise error

        service.states.read = damaged  # type: ignore[method-assign]
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            service.handle_flattrs([m.FlattrUrls(("https://mine.example/1",))])


def test_a_state_is_read_in_one_snapshot(tmp_path: Path) -> None:
    """Every query behind a fresh State runs inside one read transaction, so a commit
    of another process cannot fall between the counts and the sign-in state."""
    config = Config(home=str(tmp_path))
    log = Logger(config.log_dir, "debug")
    with Store(config.db_path, log) as mine:
        service = Service(config, log, mine, lambda _s: None, clock=lambda: 1000.0)
        statements: list[str] = []
        mine.conn.set_trace_callback(statements.append)
        service.state()
        mine.conn.set_trace_callback(None)
        assert mine.conn.in_transaction is False
    assert statements[0] == "PRAGMA data_version"
    assert statements[1] == "BEGIN" and statements[-1] == "COMMIT", statements
    inner = statements[2:-1]
    assert len(inner) >= 5, inner
    assert all(s.lstrip().upper().startswith("SELECT") for s in inner), inner


def test_a_read_inside_a_read_joins_it(tmp_path: Path) -> None:
    log = Logger(str(tmp_path / "logs"), "debug")
    with Store(tmp_path / "host.db", log) as store:
        with store.read() as outer:
            with store.read() as inner:
                assert inner is outer
                inner.execute("SELECT 1").fetchone()
            assert store.conn.in_transaction  # the inner block did not end it
        assert not store.conn.in_transaction
