"""The real host process, started exactly as Chrome starts it.

The launcher comes from the real installer; argv[1] is the extension origin and the
working directory is the launcher's folder. Nothing here mocks the host.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flattr_testing.host import HostProcess, frame, install_launcher

HELLO = {"extension": {"id": "jimjcpbicodoomdmhndojmkjllmolafb", "version": "0.1.0",
                       "build": "dev"}}
# Delivery goes nowhere in these tests: port 9 on loopback refuses at once, and
# the backoff is long, so the queue stays put while we look at it.
QUIET = {"FLATTR_API_BASE": "http://127.0.0.1:9", "FLATTR_LOG_LEVEL": "debug"}


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    return install_launcher(tmp_path / "profile", tmp_path / "home")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def host(launcher: Path, home: Path) -> Iterator[HostProcess]:
    process = HostProcess(launcher, home, env=QUIET)
    yield process
    process.kill()


def read_all_frames(data: bytes) -> list[dict[str, object]]:
    """Parse ``data`` as frames, failing if any byte is not part of a frame."""
    frames = []
    while data:
        assert len(data) >= 4, f"trailing bytes on stdout: {data!r}"
        (size,) = struct.unpack("=I", data[:4])
        assert len(data) >= 4 + size, "truncated frame on stdout"
        frames.append(json.loads(data[4 : 4 + size]))
        data = data[4 + size :]
    return frames


def test_hello_reports_version_protocol_and_state(host: HostProcess) -> None:
    reply = host.request("hello", **HELLO)
    assert reply["ok"] is True
    assert reply["result"]["host"] == {"version": "0.1.0", "protocol": 1}
    assert reply["result"]["state"] == {
        "authenticated": False, "subscription": {"active": False},
        "queue": {"pending": 0, "inFlight": 0, "failed": 0, "expired": 0, "done": 0,
                  "paused": "signed_out", "nextAttemptAt": None},
        "key": {"backend": None, "reason": None},
        "problem": None}


def test_every_type_in_one_session(host: HostProcess) -> None:
    assert host.request("hello", **HELLO)["ok"]
    reply = host.request("set-token", accessToken="tok-1234", subscription={"active": True})
    assert reply["result"] == {"authenticated": True}
    event = host.wait_event(lambda s: s["authenticated"])
    assert event["state"]["subscription"] == {"active": True}
    state = host.request("get-state")["result"]
    assert state["authenticated"] is True and state["queue"]["paused"] is None
    state = host.request("set-subscription", subscription={"active": False})["result"]
    assert state["subscription"] == {"active": False}
    assert state["queue"]["paused"] == "subscription_inactive"
    assert host.request("flattr", urls=["https://a.example/1", "https://b.example/2"])[
        "result"] == {"queued": 2}
    assert host.request("get-state")["result"]["queue"]["pending"] == 2
    state = host.request("flush")["result"]
    assert state["queue"]["pending"] == 2  # paused: nothing is sent
    state = host.request("sign-out")["result"]
    assert state["authenticated"] is False and state["queue"]["pending"] == 2


def test_page_details_relayed_as_they_are(host: HostProcess) -> None:
    """The worker relays the page's flattr-token and flattr-subscription details
    unchanged under ``detail`` (docs/protocol.md); the flat shape still works."""
    assert host.request("hello", **HELLO)["ok"]
    reply = host.request("set-token", detail={"accessToken": "tok-detail",
                                              "subscription": {"active": True}})
    assert reply["result"] == {"authenticated": True}
    state = host.request("get-state")["result"]
    assert state["authenticated"] is True and state["subscription"] == {"active": True}
    state = host.request("set-subscription", detail={"subscription": {"active": False}})
    assert state["result"]["subscription"] == {"active": False}
    refused = host.request("set-subscription", detail={"subscription": {"active": True},
                                                       "plan": "x"})
    assert refused["ok"] is False and refused["error"]["code"] == "invalid_request"
    assert "'detail' has an unexpected key 'plan'" in refused["error"]["message"]
    assert host.request("get-state")["result"]["subscription"] == {"active": False}


def test_set_token_reply_comes_after_the_token_is_durable(host: HostProcess, home: Path) -> None:
    host.request("set-token", accessToken="durable-token")
    # Another connection (another process would see the same) reads it at once.
    conn = sqlite3.connect(home / "host.db")
    assert conn.execute("SELECT COUNT(*) FROM token").fetchone()[0] == 1
    conn.close()


def test_flattr_reply_comes_after_the_urls_are_committed(host: HostProcess, home: Path) -> None:
    host.request("flattr", urls=["https://a.example/x"])
    conn = sqlite3.connect(home / "host.db")
    assert conn.execute("SELECT url FROM queue").fetchall() == [("https://a.example/x",)]
    conn.close()


def test_error_codes_invalid_request_and_unknown_type(host: HostProcess) -> None:
    reply = host.request("flattr", urls="nope")
    assert reply["error"]["code"] == "invalid_request"
    assert "'urls' must be a list" in reply["error"]["message"]
    assert host.request("reboot")["error"]["code"] == "unknown_type"
    host.send({"type": "get-state"})
    assert host.recv()["error"]["code"] == "invalid_request"


def test_invalid_json_then_valid_request_is_answered(host: HostProcess) -> None:
    host.send(b"{broken")
    reply = host.recv()
    assert reply == {"id": None, "ok": False, "error": {
        "code": "invalid_request", "message": reply["error"]["message"]}}
    host.send(b"[1,2]")
    assert host.recv()["error"]["code"] == "invalid_request"
    host.send(b"\xff\xfe")
    assert host.recv()["error"]["code"] == "invalid_request"
    assert host.request("get-state")["ok"] is True


def test_internal_error_reaches_the_extension_without_details(host: HostProcess,
                                                              home: Path) -> None:
    assert host.request("hello", **HELLO)["ok"]
    conn = sqlite3.connect(home / "host.db")
    conn.execute("DROP TABLE queue")
    conn.commit()
    conn.close()
    reply = host.request("flattr", urls=["https://a.example/"])
    assert reply["error"] == {"code": "internal", "message": "internal error; see the host log"}
    host.close_stdin()
    assert host.wait() == 0
    log = (home / "logs" / "host.log").read_text()
    assert "no such table: queue" in log and "Traceback" in log


def test_oversized_length_header_replies_too_large_and_exits(host: HostProcess,
                                                            home: Path) -> None:
    host.send_raw(struct.pack("=I", 2 * 1024 * 1024) + b"{}")
    reply = host.recv()
    assert reply["id"] is None and reply["error"]["code"] == "too_large"
    assert "frame of 2097152 bytes exceeds limit of 1048576" in reply["error"]["message"]
    assert host.wait() == 3
    assert "cannot resynchronise" in (home / "logs" / "host.log").read_text()


def test_inbound_limit_is_configurable(launcher: Path, home: Path) -> None:
    process = HostProcess(launcher, home, env={**QUIET, "FLATTR_MAX_INBOUND_FRAME": "64"})
    try:
        process.send({"id": 1, "type": "flattr", "urls": ["https://a.example/" + "x" * 100]})
        assert process.recv()["error"]["code"] == "too_large"
        assert process.wait() == 3
    finally:
        process.kill()


@pytest.mark.parametrize(
    "args",
    [
        ["chrome-extension://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"],
        ["/tmp/com.flattr.companion.json", "evil@example.org"],
        [],
        ["--not-a-browser"],
    ],
)
def test_wrong_caller_is_refused_without_touching_the_store(launcher: Path, home: Path,
                                                            args: list[str]) -> None:
    process = HostProcess(launcher, home, args=args, env=QUIET)
    try:
        process.send({"id": 1, "type": "hello", **HELLO})
        assert process.proc.stdout is not None
        out, _err = process.proc.communicate(timeout=20)
        assert out == b""
        assert process.proc.returncode != 0
        assert not (home / "host.db").exists()
        assert not (home / "token.key").exists()
    finally:
        process.kill()


def test_firefox_arguments_are_accepted(launcher: Path, home: Path) -> None:
    process = HostProcess(launcher, home, env=QUIET, args=[
        str(launcher.parent / "com.flattr.companion.json"), "companion@flattr-companion.example"])
    try:
        assert process.request("hello", **HELLO)["ok"] is True
    finally:
        process.kill()


def test_eof_exits_zero_and_stdout_holds_only_frames(launcher: Path, home: Path) -> None:
    process = HostProcess(launcher, home, env=QUIET)
    try:
        requests = b"".join(frame({"id": i, "type": t, **extra}) for i, (t, extra) in enumerate([
            ("hello", HELLO), ("get-state", {}), ("flattr", {"urls": ["https://a.example/"]}),
            ("set-token", {"accessToken": "abc-token"}), ("bogus", {}),
        ]))
        out, err = process.proc.communicate(requests + frame(b"nope"), timeout=30)
        assert process.proc.returncode == 0, err
        frames = read_all_frames(out)
        replies = [f for f in frames if "id" in f]
        assert [f["id"] for f in replies] == [0, 1, 2, 3, 4, None]
        assert all("event" in f or "ok" in f for f in frames)
    finally:
        process.kill()


def test_sigterm_finishes_and_exits_zero(host: HostProcess, home: Path) -> None:
    assert host.request("get-state")["ok"]
    host.proc.send_signal(signal.SIGTERM)
    assert host.wait() == 0
    assert "SIGTERM" in (home / "logs" / "host.log").read_text()


def test_token_never_appears_in_any_log_or_stderr(launcher: Path, home: Path) -> None:
    token = "tok-NEVER-LOG-ME-9f8e7d6c"
    process = HostProcess(launcher, home, env=QUIET)
    try:
        process.request("hello", **HELLO)
        process.request("set-token", accessToken=token, subscription={"active": True})
        process.request("set-token", accessToken=token + " bad")  # refused: echoes nothing
        process.request("set-token", detail={"accessToken": token})  # as the worker relays it
        process.request("set-token", detail={"accessToken": token + " bad"})
        process.request("flattr", urls=[f"https://a.example/?t={token}"])
        process.request("flush")
        process.close_stdin()
        process.wait(30)
        stderr = process.stderr_text()
    finally:
        process.kill()
    assert token not in stderr
    log_files = [p for p in (home / "logs").rglob("*") if p.is_file()]
    assert log_files
    for path in log_files:
        assert token.encode() not in path.read_bytes(), path
    text = (home / "logs" / "host.log").read_text()
    assert "frame in" in text and "a.example" in text  # debug was on: URLs are logged


def _flattr_many(launcher: Path, home: Path, tag: str, results: dict[str, object]) -> None:
    process = HostProcess(launcher, home, env=QUIET)
    try:
        for index in range(60):
            reply = process.request("flattr", urls=[f"https://{tag}.example/{index}"])
            assert reply["result"] == {"queued": 1}
            process.request("set-subscription", subscription={"active": index % 2 == 0})
        results[tag] = "ok"
    except Exception as exc:  # reported below
        results[tag] = exc
    finally:
        process.kill()


def test_two_host_processes_writing_at_once_lose_no_update(launcher: Path, home: Path) -> None:
    results: dict[str, object] = {}
    threads = [threading.Thread(target=_flattr_many, args=(launcher, home, tag, results))
               for tag in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == {"one": "ok", "two": "ok"}
    conn = sqlite3.connect(home / "host.db")
    urls = {row[0] for row in conn.execute("SELECT url FROM queue")}
    conn.close()
    assert urls == {f"https://{t}.example/{i}" for t in ("one", "two") for i in range(60)}


def test_status_command_never_shows_the_token(launcher: Path, home: Path) -> None:
    process = HostProcess(launcher, home, env=QUIET)
    try:
        process.request("set-token", accessToken="tok-STATUS-secret", subscription={"active": True})
        process.request("flattr", urls=["https://a.example/"])
    finally:
        process.kill()
    env = {**os.environ, "FLATTR_HOST_HOME": str(home)}
    out = subprocess.run([str(launcher), "status", "--json"], capture_output=True, text=True,
                         env=env, check=True).stdout
    state = json.loads(out)
    assert state["authenticated"] is True and state["queue"]["pending"] == 1
    assert state["home"] == str(home)
    text = subprocess.run([str(launcher), "status"], capture_output=True, text=True, env=env,
                          check=True).stdout
    assert "signed in        yes" in text and "tok-STATUS-secret" not in text + out


def test_retry_failed_moves_failed_items_back_to_pending(host: HostProcess, home: Path) -> None:
    """``retry-failed`` (the popup's "Retry failed") does what ``queue retry-failed``
    does, and replies once it is committed, with the new state."""
    assert host.request("hello", **HELLO)["ok"]
    assert host.request("retry-failed")["result"]["retried"] == 0
    host.request("flattr", urls=["https://a.example/1", "https://b.example/2"])
    conn = sqlite3.connect(home / "host.db")
    with conn:
        conn.execute("UPDATE queue SET status = 'failed', reason = 'http 400'")
    result = host.request("retry-failed")["result"]
    assert result["retried"] == 2
    assert result["state"]["queue"]["failed"] == 0 and result["state"]["queue"]["pending"] == 2
    rows = conn.execute("SELECT status, attempts, reason FROM queue").fetchall()
    conn.close()
    assert rows == [("pending", 0, None)] * 2
