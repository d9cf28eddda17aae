"""Live inspector against a real host process: off by default, refuses a
client without the secret or with an Origin header, streams a `flattr` request's
state change and log records, answers read-only queries, and never sends a token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from flattr_host.runtime import inspector
from flattr_host.tools import inspect_client
from flattr_testing.host import CHROMIUM_ID, HostProcess, install_launcher, running_host
from tests.support.loaded import loaded_after

TOKEN = "inspector-test-token-8c1d07e2b9"
HELLO = {"extension": {"id": CHROMIUM_ID, "version": "1", "build": "test"}}


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[HostProcess, Path, int]]:
    home = tmp_path / "data"
    launcher = install_launcher(tmp_path / "profile", home)
    env = {"FLATTR_INSPECT": "1", "FLATTR_LOG_LEVEL": "debug",
           "FLATTR_API_BASE": "http://127.0.0.1:9", "FLATTR_SUBMIT_DELAY_S": "30"}
    with running_host(launcher, home, env=env) as proc:
        assert proc.request("hello", **HELLO)["ok"]
        discovery = home / "inspect" / f"{proc.proc.pid}.json"
        wait_for(discovery)
        port = int(json.loads(discovery.read_text())["port"])
        yield proc, home, port


def open_client(home: Path, port: int, **kwargs: Any) -> ClientConnection:
    secret = (home / inspector.SECRET_FILE).read_text().strip()
    return connect(f"ws://127.0.0.1:{port}/",
                   additional_headers={inspector.SECRET_HEADER: secret}, **kwargs)


def receive_until(ws: ClientConnection, predicate: Any, seen: list[str],
                  timeout: float = 10.0) -> dict[str, Any]:
    """The first event, already seen or coming, that satisfies ``predicate``."""
    for raw in seen:
        old: dict[str, Any] = json.loads(raw)
        if predicate(old):
            return old
    deadline = time.monotonic() + timeout
    while True:
        raw = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        assert isinstance(raw, str)
        seen.append(raw)
        event: dict[str, Any] = json.loads(raw)
        if predicate(event):
            return event


def test_off_by_default(tmp_path: Path) -> None:
    home = tmp_path / "data"
    launcher = install_launcher(tmp_path / "profile", home)
    with running_host(launcher, home, env={"FLATTR_INSPECT": "0"}) as proc:
        assert proc.request("hello", **HELLO)["ok"]
        assert proc.request("get-state")["ok"]
    assert not (home / "inspect").exists() and not (home / inspector.SECRET_FILE).exists()


def test_secret_and_discovery_files_are_private(host: tuple[HostProcess, Path, int]) -> None:
    _proc, home, port = host
    secret = home / inspector.SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text()) >= 32
    [record] = inspect_client.running_hosts(home)
    assert record["port"] == port
    assert stat.S_IMODE((home / "inspect" / f"{record['pid']}.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "inspect").stat().st_mode) == 0o700


def test_client_without_the_secret_is_refused(host: tuple[HostProcess, Path, int]) -> None:
    _proc, _home, port = host
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{port}/")
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{port}/",
                additional_headers={inspector.SECRET_HEADER: "x" * 43})
    assert info.value.response.status_code == 401


def test_client_with_an_origin_is_refused_even_with_the_secret(
        host: tuple[HostProcess, Path, int]) -> None:
    _proc, home, port = host
    with pytest.raises(InvalidStatus) as info:
        open_client(home, port, origin="http://127.0.0.1:8000")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    log = (home / "logs" / "host.log").read_text()
    assert "inspector refused a connection carrying an Origin header" in log


def test_sees_a_flattr_requests_state_change_and_log(host: tuple[HostProcess, Path, int]) -> None:
    proc, home, port = host
    seen: list[str] = []
    with open_client(home, port) as ws:
        hello = receive_until(ws, lambda e: e["type"] == "hello", seen)
        assert hello["pid"] == proc.proc.pid and hello["state"]["queue"]["pending"] == 0
        reply = proc.request("flattr", urls=["https://example.org/a", "https://example.org/b"])
        assert reply["result"] == {"queued": 2}
        state = receive_until(ws, lambda e: e["type"] == "state", seen)
        assert state["state"]["queue"]["pending"] == 2
        receive_until(ws, lambda e: e["type"] == "log"
                      and e["record"]["msg"] == "flattrs queued", seen)
        ws.send(json.dumps({"id": 7, "query": "queue"}))
        counts = receive_until(ws, lambda e: e.get("id") == 7, seen)
        assert counts["type"] == "result" and counts["result"]["pending"] == 2
        ws.send(json.dumps({"id": 8, "query": "state"}))
        assert receive_until(ws, lambda e: e.get("id") == 8, seen)["result"]["queue"][
            "pending"] == 2
        ws.send(json.dumps({"id": 9, "query": "set-token"}))
        assert "unknown query" in receive_until(ws, lambda e: e.get("id") == 9, seen)["error"]


def test_no_token_in_anything_the_inspector_sends(host: tuple[HostProcess, Path, int]) -> None:
    proc, home, port = host
    seen: list[str] = []
    with open_client(home, port) as ws:
        receive_until(ws, lambda e: e["type"] == "hello", seen)
        assert proc.request("set-token", accessToken=TOKEN)["result"]["authenticated"]
        receive_until(ws, lambda e: e["type"] == "state" and e["state"]["authenticated"], seen)
        # Debug level logs every frame in and out: the set-token frame went by too.
        receive_until(ws, lambda e: e["type"] == "log" and e["record"]["msg"] == "frame in"
                      and e["record"]["message"].get("type") == "set-token", seen)
        for number, query in enumerate(("state", "queue"), start=1):
            ws.send(json.dumps({"id": number, "query": query}))
            receive_until(ws, lambda e, n=number: e.get("id") == n, seen)
        assert proc.request("sign-out")["ok"]
        receive_until(ws, lambda e: e["type"] == "state" and not e["state"]["authenticated"],
                      seen)
    assert len(seen) > 5
    assert not [raw for raw in seen if TOKEN in raw]


def test_inspect_command_shows_running_hosts(host: tuple[HostProcess, Path, int]) -> None:
    proc, home, _port = host
    done = subprocess.run([sys.executable, "-m", "flattr_host", "inspect", "--once"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FLATTR_HOST_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"[{proc.proc.pid}] connected host ")
    assert "signed in=no" in done.stdout and "pending=0" in done.stdout


def test_inspect_command_without_hosts_says_how(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "flattr_host", "inspect", "--once"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FLATTR_HOST_HOME": str(tmp_path)})
    assert done.returncode == 1 and "FLATTR_INSPECT=1" in done.stderr


def test_discovery_file_is_removed_at_exit(host: tuple[HostProcess, Path, int]) -> None:
    proc, home, _port = host
    proc.close_stdin()
    assert proc.wait() == 0
    assert list((home / "inspect").glob("*.json")) == []


def test_hello_path_imports_neither_asyncio_nor_websockets() -> None:
    code = "import flattr_host.tools.cli, flattr_host.runtime.stdio"
    watched = ("asyncio", "websockets", "flattr_host.runtime.inspector")
    assert loaded_after(code, watched) == []
