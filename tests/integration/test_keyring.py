"""The token's key in a real Secret Service (gnome-keyring), with real host processes.

Each test gets its own session bus and gnome-keyring (tests/support/secret_service.py)
and hands its address to the hosts it starts; the fake API's journal shows which
token each batch carried. Skipped, with the reason, where gnome-keyring or
dbus-run-session is not installed (`make keyring` installs them).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Delivery, drained
from tests.support.host import HostProcess
from tests.support.loaded import imported, settled
from tests.support.secret_service import SecretServiceSession, missing

NO_KEYRING = missing()
needs_keyring = pytest.mark.skipif(NO_KEYRING is not None,
                                   reason=f"no Secret Service here: {NO_KEYRING}")


@pytest.fixture
def keyring(tmp_path: Path) -> Iterator[SecretServiceSession]:
    if NO_KEYRING is not None:
        pytest.skip(f"no Secret Service here: {NO_KEYRING}")
    session = SecretServiceSession(tmp_path / "secret-service").start()
    try:
        yield session
    finally:
        session.stop()


def ring_env(keyring: SecretServiceSession, **env: str) -> dict[str, str]:
    return {"FLATTR_KEY_BACKEND": "auto", **keyring.env, **env}


def deliver(delivery: Delivery, host: HostProcess, url: str) -> dict[str, Any]:
    """Queue ``url``, wait until it is delivered; the journal entry that carried it."""
    done = host.request("get-state")["result"]["queue"]["done"]
    assert host.request("flattr", urls=[url])["result"] == {"queued": 1}
    host.wait_event(drained(done + 1), timeout=20)
    entries = [e for e in delivery.bulk_requests()
               if url in [item["url"] for item in json.loads(e["body"])]]
    assert len(entries) == 1
    return entries[0]


def signed_out(state: dict[str, Any]) -> bool:
    return state["authenticated"] is False


def no_token_in_clear(home: Path, token: str) -> None:
    for path in home.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def entry_key(keyring: SecretServiceSession, home: Path) -> bytes | None:
    secret = keyring.lookup(home)
    return None if secret is None else base64.b64decode(secret)


def status(delivery: Delivery, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "flattr_host", "status", "--json"],
                          capture_output=True, text=True, check=True, timeout=60,
                          env={**os.environ, "FLATTR_HOST_HOME": str(delivery.home), **env})
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@needs_keyring
def test_sign_in_with_the_keyring_keeps_no_key_file(delivery: Delivery,
                                                    keyring: SecretServiceSession) -> None:
    env = ring_env(keyring)
    host = delivery.start(**env)
    assert not (delivery.home / "token.key").exists()
    key = entry_key(keyring, delivery.home)
    assert key is not None and len(key) == 32
    entry = deliver(delivery, host, "https://blog.example/keyring-1")
    assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"
    state = host.request("get-state")["result"]
    assert state["key"] == {"backend": "secret-service", "reason": "secret-service reachable"}
    assert status(delivery, env)["key"]["backend"] == "secret-service"
    assert not (delivery.home / "token.key").exists()
    no_token_in_clear(delivery.home, delivery.token)


@needs_keyring
def test_a_file_key_moves_into_the_keyring_at_the_next_start(
        delivery: Delivery, keyring: SecretServiceSession) -> None:
    first = delivery.start()  # no session bus: auto keeps the key in the file
    state = first.request("get-state")["result"]
    assert state["key"]["backend"] == "file"
    assert "DBUS_SESSION_BUS_ADDRESS is not set" in state["key"]["reason"]
    file_key = (delivery.home / "token.key").read_bytes()
    first.close_stdin()
    assert first.wait() == 0
    second = delivery.start(sign_in=False, **ring_env(keyring))
    entry = deliver(delivery, second, "https://blog.example/keyring-2")
    assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"  # not signed out
    assert not (delivery.home / "token.key").exists()
    assert entry_key(keyring, delivery.home) == file_key
    state = second.request("get-state")["result"]
    assert state["authenticated"] is True
    assert state["key"]["backend"] == "secret-service"
    assert "moved from token.key" in state["key"]["reason"]


@needs_keyring
def test_a_keyring_unlocked_while_the_host_runs_takes_over_the_file_key(
        delivery: Delivery, keyring: SecretServiceSession) -> None:
    keyring.lock()
    host = delivery.start(**ring_env(keyring))
    state = host.request("get-state")["result"]
    assert state["key"]["backend"] == "file" and "locked" in state["key"]["reason"]
    assert (delivery.home / "token.key").exists() and keyring.lookup(delivery.home) is None
    keyring.unlock()
    entry = deliver(delivery, host, "https://blog.example/keyring-3")
    assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"
    assert not (delivery.home / "token.key").exists()
    assert entry_key(keyring, delivery.home) is not None
    assert host.request("get-state")["result"]["authenticated"] is True


@needs_keyring
def test_a_keyring_locked_while_the_host_runs_asks_to_sign_in_again(
        delivery: Delivery, keyring: SecretServiceSession) -> None:
    host = delivery.start(**ring_env(keyring))
    deliver(delivery, host, "https://blog.example/keyring-4a")
    keyring.lock()
    sent = len(delivery.bulk_requests())
    assert host.request("flattr", urls=["https://blog.example/keyring-4b"])["ok"]
    event = host.wait_event(signed_out, timeout=20)
    assert event["state"]["queue"]["paused"] == "signed_out"
    assert event["state"]["queue"]["pending"] == 1  # kept for after the next sign-in
    assert len(delivery.bulk_requests()) == sent  # nothing was sent without a usable key
    state = host.request("get-state")["result"]
    assert state["key"]["backend"] == "file" and "locked" in state["key"]["reason"]
    assert list(delivery.home.glob("token.broken-*.json"))
    no_token_in_clear(delivery.home, delivery.token)
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    host.wait_event(drained(2), timeout=20)
    assert delivery.bulk_requests()[-1]["headers"]["Authorization"] == f"Bearer {delivery.token}"
    assert (delivery.home / "token.key").exists()
    assert host.proc.poll() is None


@needs_keyring
def test_an_entry_deleted_while_the_host_runs_asks_to_sign_in_again(
        delivery: Delivery, keyring: SecretServiceSession) -> None:
    host = delivery.start(**ring_env(keyring))
    old = entry_key(keyring, delivery.home)
    keyring.delete(delivery.home)
    assert host.request("flattr", urls=["https://blog.example/keyring-5"])["ok"]
    host.wait_event(signed_out, timeout=20)
    new = entry_key(keyring, delivery.home)
    assert new is not None and new != old  # a new key, in the keyring again
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    host.wait_event(drained(1), timeout=20)
    assert not (delivery.home / "token.key").exists()
    no_token_in_clear(delivery.home, delivery.token)


@needs_keyring
def test_keyring_only_refuses_sign_in_while_locked(delivery: Delivery,
                                                   keyring: SecretServiceSession) -> None:
    keyring.lock()
    host = delivery.start(sign_in=False, **ring_env(keyring, FLATTR_KEY_BACKEND="keyring"))
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": False}
    state = host.request("get-state")["result"]
    assert state["authenticated"] is False
    assert state["key"]["backend"] is None and "locked" in state["key"]["reason"]
    assert not (delivery.home / "token.key").exists()
    keyring.unlock()
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    deliver(delivery, host, "https://blog.example/keyring-6")


@needs_keyring
def test_several_hosts_share_one_keyring_key(delivery: Delivery,
                                             keyring: SecretServiceSession) -> None:
    env = ring_env(keyring)
    hosts = [delivery.start(sign_in=False, **env) for _ in range(3)]
    for host in hosts:  # every one signs in before any sends: they race to make the key
        host.send({"id": 99, "type": "set-token", "accessToken": delivery.token,
                   "subscription": {"active": True}})
    for host in hosts:
        while "event" in (reply := host.recv()):
            host.events.append(reply)
        assert reply["result"] == {"authenticated": True}
    assert len(keyring.items(delivery.home)) == 1
    for number, host in enumerate(hosts):
        entry = deliver(delivery, host, f"https://blog.example/keyring-7-{number}")
        assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"
    assert len(keyring.items(delivery.home)) == 1


@needs_keyring
def test_uninstall_purge_removes_the_keyring_entry(delivery: Delivery,
                                                   keyring: SecretServiceSession) -> None:
    delivery.start(**ring_env(keyring))
    assert keyring.lookup(delivery.home) is not None
    done = subprocess.run(
        [sys.executable, "-m", "flattr_host", "uninstall", "--purge", "--browser", "chromium",
         "--user-data-dir", str(delivery.launcher.parent.parent)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "FLATTR_HOST_HOME": str(delivery.home), **keyring.env})
    assert done.returncode == 0, done.stderr
    assert "removed the token key from secret-service" in done.stdout
    assert keyring.lookup(delivery.home) is None


# -- without a keyring ----------------------------------------------------------------------

def test_the_keyring_is_not_touched_unless_a_key_is_needed(delivery: Delivery,
                                                           tmp_path: Path) -> None:
    """A session bus that records connections: hello, state and queueing while signed
    out never connect to it; signing in does (and, as the bus never answers, the key
    falls back to the file)."""
    path = tmp_path / "bus"
    bus = socket.socket(socket.AF_UNIX)
    bus.bind(str(path))
    bus.listen(8)
    bus.settimeout(0)
    env = {"FLATTR_KEY_BACKEND": "auto", "DBUS_SESSION_BUS_ADDRESS": f"unix:path={path}"}
    try:
        host = delivery.start(sign_in=False, **env)
        assert host.request("get-state")["result"]["key"] == {"backend": None, "reason": None}
        assert host.request("flattr", urls=["https://blog.example/quiet"])["ok"]
        host.request("get-state")
        with pytest.raises(BlockingIOError):
            bus.accept()  # nobody connected
        reply = host.request("set-token", timeout=30, accessToken=delivery.token,
                             subscription={"active": True})
        assert reply["result"] == {"authenticated": True}
        conn, _ = bus.accept()  # the key was needed: the host asked the keyring
        conn.close()
        state = host.request("get-state")["result"]
        assert state["key"]["backend"] == "file"
        assert "Secret Service" in state["key"]["reason"]
    finally:
        bus.close()


def test_an_empty_key_file_is_set_aside_and_sign_in_works_at_once(delivery: Delivery) -> None:
    delivery.home.mkdir(parents=True, exist_ok=True)
    (delivery.home / "token.key").write_bytes(b"")
    host = delivery.start(FLATTR_KEY_BACKEND="file")  # start() asserts authenticated: true
    entry = deliver(delivery, host, "https://blog.example/empty-key")
    assert entry["headers"]["Authorization"] == f"Bearer {delivery.token}"
    assert len((delivery.home / "token.key").read_bytes()) == 32
    assert list(delivery.home.glob("token.key.broken-*"))
    host.close_stdin()
    assert host.wait() == 0
    log = (delivery.home / "logs" / "host.log").read_text()
    assert "token key file is unusable; moved aside" in log
    assert "submitter stopped" not in log


def test_a_key_file_emptied_under_a_stored_token_signs_out_then_in(delivery: Delivery) -> None:
    first = delivery.start(FLATTR_KEY_BACKEND="file")
    first.close_stdin()
    assert first.wait() == 0
    (delivery.home / "token.key").write_bytes(b"\0" * 5)
    host = delivery.start(sign_in=False, FLATTR_KEY_BACKEND="file")
    host.wait_event(signed_out, timeout=20, since=0)
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    deliver(delivery, host, "https://blog.example/short-key")
    assert list(delivery.home.glob("token.key.broken-*"))
    assert list(delivery.home.glob("token.broken-*.json"))


@needs_keyring
def test_doctor_names_the_backend_and_a_locked_keyring(delivery: Delivery,
                                                       keyring: SecretServiceSession) -> None:
    host = delivery.start(**ring_env(keyring))
    host.close_stdin()
    assert host.wait() == 0

    def doctor() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flattr_host", "doctor", "--skip-api", "--browser",
             "chromium", "--user-data-dir", str(delivery.launcher.parent.parent)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "FLATTR_HOST_HOME": str(delivery.home), **ring_env(keyring)})
        return done.stdout

    report = doctor()
    assert "ok    token key: secret-service (key_backend auto" in report, report
    assert "ok    token decryptable: the stored token decrypts" in report, report
    assert delivery.token not in report
    keyring.lock()
    report = doctor()
    assert ("FAIL  token key: the host keeps the key in secret-service, but the Secret "
            "Service's default collection is locked") in report, report
    assert "fix: unlock the keyring" in report


@needs_keyring
def test_a_keyring_locked_before_a_restart_is_found_when_a_batch_is_due(
        delivery: Delivery, keyring: SecretServiceSession, tmp_path: Path) -> None:
    """The start-up check does not ask the keyring (SecretStorage imports
    cryptography: docs/performance.md, idle memory); the first batch does, and a
    locked keyring then signs out as it does for a running host: nothing sent, the
    item kept for the next sign-in."""
    env = ring_env(keyring)
    first = delivery.start(**env)
    first.close_stdin()
    assert first.wait() == 0
    keyring.lock()
    host = HostProcess(delivery.launcher, delivery.home, stderr=tmp_path / "stderr",
                       env=delivery.env(PYTHONPROFILEIMPORTTIME="1", **env))
    delivery.hosts.append(host)
    assert host.request("hello", extension={"id": "x", "version": "1", "build": "t"})["ok"]
    state = host.request("get-state")["result"]
    assert state["authenticated"] is True and state["key"]["backend"] == "secret-service"

    settled(delivery.home, host)
    assert not {"secretstorage", "jeepney", "cryptography"} & imported(host)
    assert host.request("flattr", urls=["https://blog.example/keyring-8"])["ok"]
    event = host.wait_event(signed_out, timeout=20)
    assert event["state"]["queue"]["pending"] == 1
    assert delivery.bulk_requests() == []
    assert list(delivery.home.glob("token.broken-*.json"))
    keyring.unlock()
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    host.wait_event(drained(1), timeout=20)
    assert delivery.bulk_requests()[-1]["headers"]["Authorization"] == f"Bearer {delivery.token}"


def sockets(host: HostProcess) -> int:
    """How many sockets the host process holds open (its D-Bus connections here: the
    API client has connected to nothing while the queue is empty)."""
    count = 0
    for fd in Path(f"/proc/{host.proc.pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:
            continue  # closed meanwhile by another thread (a log or store file)
    return count


@needs_keyring
def test_signing_in_keeps_no_keyring_connection_open(delivery: Delivery,
                                                      keyring: SecretServiceSession) -> None:
    """The message loop needs the keyring only to seal the token: the connection it
    opened for that is closed once the reply is sent."""
    host = delivery.start(sign_in=False, **ring_env(keyring))
    assert sockets(host) == 0
    reply = host.request("set-token", accessToken=delivery.token, subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    assert entry_key(keyring, delivery.home) is not None  # sealed with the keyring's key
    assert sockets(host) == 0
