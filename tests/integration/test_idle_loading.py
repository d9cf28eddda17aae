"""What a signed-in host with nothing to send has loaded: real processes, real HTTPS.

TLS, the HTTP client and ``cryptography`` are loaded when a batch is due, not
because a token is stored (docs/performance.md, idle memory). Each host runs with
``PYTHONPROFILEIMPORTTIME=1`` and is read through tests/support/loaded.py (its
imports, its memory map, whether its submitter has settled).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from flattr_testing.host import HostProcess
from tests.integration.conftest import Delivery, drained
from tests.support.loaded import imported, log_lines, mapped, settled

#: Loaded only when a batch is due (or a token is sealed), and why they matter.
DEFERRED_MODULES = {
    "cryptography": "AES-GCM and its Rust core with OpenSSL: 13 MiB",
    "ssl": "TLS and OpenSSL's libssl",
    "http.client": "the HTTP client (and the email package it parses headers with)",
    "hashlib": "OpenSSL's libcrypto through _hashlib: 3.8 MiB for a 40-byte hash",
    "secretstorage": "the keyring library, which imports cryptography",
}
DEFERRED_OBJECTS = re.compile(r"/(_ssl|_rust|_hashlib|_cffi_backend)[^/]*\.so")

URL = "https://blog.example/idle-loading"


def restarted(delivery: Delivery, tmp_path: Path, **env: str) -> HostProcess:
    """A host on a data directory that holds a token, started again, settled."""
    host = HostProcess(delivery.launcher, delivery.home, stderr=tmp_path / "stderr",
                       env=delivery.env(PYTHONPROFILEIMPORTTIME="1", **env))
    delivery.hosts.append(host)
    assert host.request("hello", extension={"id": "x", "version": "1", "build": "t"})["ok"]
    settled(delivery.home, host)
    return host


def signed_in_once(delivery: Delivery) -> None:
    first = delivery.start()
    first.close_stdin()
    assert first.wait() == 0


def test_a_signed_in_idle_host_loads_tls_http_and_cryptography_only_to_deliver(
        delivery: Delivery, tmp_path: Path) -> None:
    signed_in_once(delivery)
    host = restarted(delivery, tmp_path)
    state = host.request("get-state")["result"]
    assert state["authenticated"] is True and state["queue"]["pending"] == 0
    assert state["problem"] is None
    time.sleep(0.3)  # the settle of the idle-memory figure
    loaded = imported(host)
    assert "flattr_host.delivery.submitter" in loaded  # the report is real: it started
    assert {m: why for m, why in DEFERRED_MODULES.items() if m in loaded} == {}
    assert mapped(host, DEFERRED_OBJECTS) == set()

    assert host.request("flattr", urls=[URL])["result"] == {"queued": 1}
    host.wait_event(drained(1), timeout=20)
    (entry,) = delivery.bulk_requests()
    assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"
    loaded = imported(host)
    assert {"cryptography", "ssl", "http.client"} <= loaded
    assert {"_ssl", "_rust"} <= mapped(host, DEFERRED_OBJECTS)
    assert "hashlib" not in loaded and "secretstorage" not in loaded  # never needed here


def test_a_token_that_does_not_open_is_found_when_the_first_batch_is_due(
        delivery: Delivery, tmp_path: Path) -> None:
    """The key matches, so start-up cannot tell without decrypting; the first batch
    does: signed out as before (token set aside, nothing sent, the item kept), and
    the submitter goes on (signing in again delivers)."""
    signed_in_once(delivery)
    import sqlite3

    conn = sqlite3.connect(delivery.home / "host.db")
    with conn:
        conn.execute("UPDATE token SET ciphertext = zeroblob(length(ciphertext))")
    conn.close()
    host = restarted(delivery, tmp_path)
    assert host.request("get-state")["result"]["authenticated"] is True
    assert "cryptography" not in imported(host)
    assert host.request("flattr", urls=[URL])["result"] == {"queued": 1}
    event = host.wait_event(lambda s: s["authenticated"] is False, timeout=20)
    assert event["state"]["queue"]["pending"] == 1
    assert event["state"]["queue"]["paused"] == "signed_out"
    assert delivery.bulk_requests() == []
    assert list(delivery.home.glob("token.broken-*.json"))
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    host.wait_event(drained(1), timeout=20)
    assert [e["headers"]["Authorization"] for e in delivery.bulk_requests()] == [
        f"Bearer {delivery.token}"]


def test_a_broken_cryptography_is_a_problem_in_the_state_when_a_batch_is_due(
        delivery: Delivery, tmp_path: Path) -> None:
    """``cryptography`` that cannot be imported: an idle host does not notice; the
    first batch puts the error in the state's problem, keeps the item, sends
    nothing, and the host (and its thread) stay up."""
    signed_in_once(delivery)
    shadow = tmp_path / "shadow" / "cryptography"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("cryptography broken for a test")\n')
    host = restarted(delivery, tmp_path, PYTHONPATH=str(shadow.parent))
    state = host.request("get-state")["result"]
    assert state["authenticated"] is True and state["problem"] is None
    assert host.request("flattr", urls=[URL])["result"] == {"queued": 1}
    event = host.wait_event(lambda s: s["problem"] is not None, timeout=20)
    problem = event["state"]["problem"]
    assert problem["code"] == "delivery_stopped", problem
    assert "cryptography broken for a test" in problem["message"]
    state = host.request("get-state")["result"]
    assert state["queue"]["pending"] == 1 and delivery.bulk_requests() == []
    assert host.proc.poll() is None
    log = [line["msg"] for line in log_lines(delivery.home, host.proc.pid)]
    assert "submitter error; trying again shortly" in log


@pytest.mark.parametrize("damage", ["empty", "other key"])
def test_a_lost_key_still_signs_out_right_after_start(delivery: Delivery, tmp_path: Path,
                                                      damage: str) -> None:
    """The start-up check reads the key file (no decryption): a key that is not the
    token's still signs out before anything is queued, without cryptography."""
    signed_in_once(delivery)
    key = delivery.home / "token.key"
    key.write_bytes(b"" if damage == "empty" else bytes(32))
    host = HostProcess(delivery.launcher, delivery.home, stderr=tmp_path / "stderr",
                       env=delivery.env(PYTHONPROFILEIMPORTTIME="1"))
    delivery.hosts.append(host)
    assert host.request("hello", extension={"id": "x", "version": "1", "build": "t"})["ok"]
    host.wait_event(lambda s: s["authenticated"] is False, timeout=20, since=0)
    assert list(delivery.home.glob("token.broken-*.json"))
    assert "cryptography" not in imported(host)
