"""A damaged store found at run time: kept aside, salvaged, replaced in place (real SQLite).

Damage is made the way disks make it: data pages of the queue table overwritten
with garbage, the header and the schema (page 1) intact, found through
``dbstat``. Every connection that was open on the file sees the fresh store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flattr_host.core import health
from flattr_host.core.config import Config
from flattr_host.core.logs import Logger
from flattr_host.core.session import TokenStored
from flattr_host.storage import recovery
from flattr_host.storage.parts import Parts
from flattr_host.storage.queue import Queue
from flattr_host.storage.state import StateStore
from flattr_host.storage.store import Store, is_corruption_error
from flattr_host.storage.token_store import TokenStore
from tests.support.damage import garble, queue_leaf_pages

URLS = [f"https://site{i}.example/{'p' * 60}/{i}" for i in range(600)]


@pytest.fixture
def filled(home: Path, log: Logger) -> Any:
    store = Store(home / "host.db", log)
    tokens = TokenStore(store, home / "token.key", log)
    StateStore(store, tokens).apply(TokenStored(True), token="tok-abcdef")
    Queue(store).enqueue(URLS, now=1000.0)
    with store.write() as conn:
        conn.execute("INSERT INTO attention_site (site, enabled_at) VALUES ('blog.example', 1)")
    yield store, tokens
    store.close()


def read_all(store: Store) -> None:
    list(store.conn.execute("SELECT * FROM queue NOT INDEXED"))


def test_runtime_damage_is_kept_aside_salvaged_and_replaced_in_place(
        filled: Any, home: Path, log: Logger) -> None:
    store, _tokens = filled
    other = Store(home / "host.db", log)  # another connection (a thread, another host)
    leaves = queue_leaf_pages(home / "host.db")
    assert len(leaves) >= 6
    bad = leaves[2:4]
    garble(home / "host.db", bad)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        read_all(store)
    assert is_corruption_error(caught.value)

    note = recovery.recover(store, log, caught.value)

    assert note is not None and note["code"] == "store_replaced"
    kept = Path(note["kept"])
    assert kept.name.startswith("host.db.corrupt-") and kept.exists()
    assert recovery.integrity_problems(sqlite3.connect(kept)) != []  # the damage is kept
    salvaged = [item["url"] for item in Queue(store).items()]
    # Every row on a readable page is saved, in order; the rows on the bad pages are not.
    assert 0 < len(salvaged) < len(URLS)
    assert salvaged == [u for u in URLS if u in set(salvaged)]
    assert note["salvaged"] == {"pending": len(salvaged), "sites": 1, "countAll": False,
                                "complete": False}
    assert f"{len(salvaged)} pending flattrs were saved" in note["message"]
    for conn_store in (store, other):  # every open connection sees the fresh store
        assert recovery.integrity_problems(conn_store.conn) == []
        assert health.read_store_problem(conn_store.conn) == note
        assert TokenStore(conn_store, home / "token.key", log).present() is False
        assert Queue(conn_store).counts()["pending"] == len(salvaged)
        assert conn_store.conn.execute("SELECT site FROM attention_site").fetchall() == [
            ("blog.example",)]
    other.close()
    text = (home / "logs" / "host.log").read_text()
    assert "store was damaged; kept aside and replaced" in text
    assert "site1.example" not in text  # no queued URL in the log


def test_signing_in_again_clears_the_note(filled: Any, home: Path, log: Logger) -> None:
    store, tokens = filled
    garble(home / "host.db", queue_leaf_pages(home / "host.db")[:1])
    assert recovery.recover(store, log, None) is not None
    states = StateStore(store, tokens)
    states.apply(TokenStored(True), token="tok-new-one")
    assert health.read_store_problem(store.conn) is None


def test_a_sound_store_is_kept_when_an_error_is_not_confirmed(filled: Any, home: Path,
                                                              log: Logger) -> None:
    store, _tokens = filled
    error = sqlite3.DatabaseError("database disk image is malformed")
    assert recovery.recover(store, log, error) is None
    assert Queue(store).counts()["pending"] == len(URLS)
    assert not list(home.glob("host.db.corrupt-*"))
    assert "integrity check passes; store kept" in (home / "logs" / "host.log").read_text()


def test_a_second_process_finding_it_replaced_does_nothing_more(filled: Any, home: Path,
                                                               log: Logger) -> None:
    store, _tokens = filled
    other = Store(home / "host.db", log)
    garble(home / "host.db", queue_leaf_pages(home / "host.db")[:1])
    first = recovery.recover(store, log, None)
    assert first is not None
    assert recovery.recover(other, log, sqlite3.DatabaseError("malformed")) is None
    assert len(list(home.glob("host.db.corrupt-*"))) == 1
    other.close()


def test_a_file_that_is_no_database_any_more_is_moved_aside_and_reopened(
        filled: Any, home: Path, log: Logger) -> None:
    store, _tokens = filled
    db = home / "host.db"
    queue_leaf_pages(db)  # checkpoint: everything is in the main file
    with open(db, "r+b") as handle:
        handle.write(os.urandom(100))  # the header
    other = Store.__new__(Store)  # a connection opened before the damage
    other.__dict__.update(store.__dict__)
    other.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    note = recovery.recover(store, log, sqlite3.DatabaseError("file is not a database"))
    assert note is not None and Path(note["kept"]).exists()
    assert recovery.integrity_problems(store.conn) == []
    assert health.read_store_problem(store.conn)["code"] == "store_replaced"
    assert other.moved()
    with other.read() as conn:  # follows the new file at its next transaction
        assert health.read_store_problem(conn)["code"] == "store_replaced"
    other.close()


def test_check_at_start_finds_damage_in_data_pages(filled: Any, home: Path,
                                                   log: Logger) -> None:
    store, _tokens = filled
    assert recovery.check_at_start(store, log) is None
    garble(home / "host.db", queue_leaf_pages(home / "host.db")[-2:-1])
    note = recovery.check_at_start(store, log)
    assert note is not None and note["salvaged"]["pending"] < len(URLS)


# -- the submitter meets the damage ------------------------------------------------------

class _NoCalls:
    def post_bulk(self, token: str, urls: list[str]) -> Any:
        raise AssertionError("nothing may be sent from a damaged store")

    def close(self) -> None:
        pass


def test_the_submitter_replaces_a_store_damaged_at_start_and_goes_on(
        home: Path, log: Logger) -> None:
    config = Config(home=str(home), api_base="http://127.0.0.1:9", submit_delay_s=0.0,
                    retry_base_s=3600.0)
    store = Store(config.db_path, log)
    tokens = TokenStore(store, config.key_path, log)
    StateStore(store, tokens).apply(TokenStored(True), token="tok-abcdef")
    Queue(store).enqueue(URLS, now=1.0e12)  # not due: the submitter only looks
    garble(home / "host.db", queue_leaf_pages(home / "host.db")[1:2])
    changed = threading.Event()
    states: list[Any] = []

    def on_change(parts: Parts) -> None:
        from flattr_host.runtime.service import build_state

        states.append(build_state(parts, 0.0))
        if states[-1]["problem"]:
            changed.set()

    from flattr_host.delivery.submitter import Submitter

    worker = Submitter(config, log, on_change, client_factory=_NoCalls)
    worker.start()
    try:
        assert changed.wait(10), states
    finally:
        assert worker.stop(5)
    state = states[-1]
    assert state["authenticated"] is False and state["problem"]["code"] == "store_replaced"
    assert 0 < state["queue"]["pending"] < len(URLS)
    assert health.PROCESS.current() is None  # the thread runs: no delivery problem
    store.close()


def test_the_submitter_meeting_damage_mid_run_replaces_the_store_and_lives(
        home: Path, log: Logger) -> None:
    config = Config(home=str(home), api_base="http://127.0.0.1:9", submit_delay_s=0.0,
                    retry_base_s=3600.0)
    store = Store(config.db_path, log)
    Queue(store).enqueue(URLS, now=time.time())
    states: list[Any] = []
    replaced = threading.Event()

    def on_change(parts: Parts) -> None:
        from flattr_host.runtime.service import build_state

        states.append(build_state(parts, time.time()))
        if states[-1]["problem"]:
            replaced.set()

    from flattr_host.delivery.submitter import Submitter

    worker = Submitter(config, log, on_change, client_factory=_NoCalls)
    worker.start()  # signed out: it checks the store, then sleeps until woken
    try:
        log_file = home / "logs" / "host.log"
        for _ in range(1000):  # waiting for the thread to get there, not for a backoff
            if log_file.exists() and "submitter sleeping" in log_file.read_text():
                break
            time.sleep(0.01)
        garble(home / "host.db", queue_leaf_pages(home / "host.db")[:3])
        tokens = TokenStore(store, config.key_path, log)
        StateStore(store, tokens).apply(TokenStored(True), token="tok-abcdef")
        worker.wake()  # it claims a batch: the claim reads the damaged pages
        assert replaced.wait(10), states
    finally:
        assert worker.stop(5)
    state = states[-1]
    assert state["problem"]["code"] == "store_replaced" and state["authenticated"] is False
    assert state["queue"]["inFlight"] == 0 and 0 < state["queue"]["pending"] < len(URLS)
    text = (home / "logs" / "host.log").read_text()
    (line,) = [json.loads(x) for x in text.splitlines()
               if "store was damaged; kept aside and replaced" in x]
    assert "malformed" in line["error"]  # found by a query, not by the start-up check
    assert "submitter stopped" not in text
    store.close()
