"""Unit tests of the Firefox test support without a browser.

flattr_testing.bidi is driven against a scripted WebSocket server (the real
`websockets` package on loopback) whose behaviour each command name selects;
flattr_testing.connect_proxy against a local echo server. Browser-driven checks
live in tests/e2e/test_firefox_support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from flattr_testing.bidi import (
    BidiCommandError,
    BidiConnectionError,
    BidiScriptError,
    BidiSession,
    BidiTimeoutError,
    Channel,
    RemoteReference,
    deserialize,
    serialize,
)
from flattr_testing.connect_proxy import ConnectProxy, ProxyConfigError, flattr_map
from flattr_testing.firefox import (
    install_native_manifests,
    native_messaging_dir,
    proxy_prefs,
    write_user_js,
)

# -- a scripted BiDi endpoint --


@dataclass
class FakeEndpoint:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str | None] = field(default_factory=list)


async def _handle(ws: ServerConnection, endpoint: FakeEndpoint) -> None:
    endpoint.origins.append(ws.request.headers.get("Origin") if ws.request else None)
    async for raw in ws:
        msg = json.loads(raw)
        endpoint.received.append(msg)
        method, msg_id, params = msg["method"], msg["id"], msg["params"]
        if method == "test.hang":
            continue
        if method == "test.close":
            await ws.close()
            return
        if method == "test.fail":
            reply = {"type": "error", "id": msg_id, "error": "invalid argument",
                     "message": "no such thing", "stacktrace": ""}
        elif method == "session.new":
            reply = {"type": "success", "id": msg_id,
                     "result": {"sessionId": "s1", "capabilities": {"browserName": "fake"}}}
        elif method == "test.message":
            for channel in ("other", "c"):
                data = {"type": "object", "value": [["k", {"type": "string", "value": channel}]]}
                await ws.send(json.dumps({"type": "event", "method": "script.message", "params": {
                    "channel": channel, "data": data, "source": {"realm": "r"}}}))
            reply = {"type": "success", "id": msg_id, "result": {}}
        elif method == "test.emit":
            for n in range(params["count"]):
                await ws.send(json.dumps({"type": "event", "method": params["event"],
                                          "params": {"n": n}}))
            reply = {"type": "success", "id": msg_id, "result": {}}
        elif method == "script.evaluate" and params["expression"] == "throw":
            reply = {"type": "success", "id": msg_id, "result": {
                "type": "exception", "realm": "r",
                "exceptionDetails": {"text": "Error: boom", "lineNumber": 0}}}
        elif method == "script.evaluate":
            reply = {"type": "success", "id": msg_id, "result": {
                "type": "success", "realm": "r",
                "result": {"type": "string", "value": params["expression"]}}}
        else:
            reply = {"type": "success", "id": msg_id, "result": {"echo": params}}
        await ws.send(json.dumps(reply))


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        fake = FakeEndpoint(url="")
        server = await serve(lambda ws: _handle(ws, fake), "127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/session"
        holder["fake"], holder["server"] = fake, server
        ready.set()
        await server.serve_forever()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder["fake"]
    loop.call_soon_threadsafe(holder["server"].close)
    thread.join(10)
    loop.close()


def test_command_result_and_no_origin_header(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        assert bidi.send("test.echo", {"a": 1}) == {"echo": {"a": 1}}
    assert endpoint.origins == [None]  # Firefox refuses any Origin not allowed
    assert endpoint.received[0]["method"] == "test.echo"


def test_command_error_names_command_code_and_message(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi, pytest.raises(BidiCommandError) as err:
        bidi.send("test.fail")
    assert err.value.command == "test.fail"
    assert err.value.error == "invalid argument"
    assert str(err.value) == "test.fail failed: invalid argument: no such thing"


def test_unanswered_command_times_out(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        with pytest.raises(BidiTimeoutError, match=r"test\.hang: no reply within 0\.2 s"):
            bidi.send("test.hang", timeout=0.2)
        # The session is still usable afterwards.
        assert bidi.send("test.echo", {}) == {"echo": {}}


def test_closed_connection_fails_pending_and_later_commands(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        with pytest.raises(BidiConnectionError, match=r"test\.close"):
            bidi.send("test.close")
        with pytest.raises(BidiConnectionError, match=r"test\.echo"):
            bidi.send("test.echo")


def test_connect_refused_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BidiConnectionError, match=f"127.0.0.1:{port}"):
        BidiSession(f"ws://127.0.0.1:{port}/session", timeout=2)


def test_events_are_buffered_and_filtered(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        bidi.send("test.emit", {"event": "log.entryAdded", "count": 3})
        # Arrived before anyone waited: still delivered, oldest matching first.
        third = bidi.wait_for_event("log.entryAdded", lambda e: e.params["n"] == 2, timeout=2)
        assert third.params == {"n": 2}
        assert bidi.wait_for_event("log.entryAdded", timeout=2).params == {"n": 0}
        assert [e.params for e in bidi.drain_events()] == [{"n": 1}]
        with pytest.raises(BidiTimeoutError, match=r"no log\.entryAdded event matched"):
            bidi.wait_for_event("log.entryAdded", timeout=0.2)


def test_channel_message_is_deserialized(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        bidi.send("test.message")
        assert bidi.wait_for_channel_message("c", timeout=2) == {"k": "c"}
        assert bidi.wait_for_channel_message("other", timeout=2) == {"k": "other"}


def test_evaluate_returns_value_or_raises_script_error(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        assert bidi.evaluate("1 + 1", "ctx") == "1 + 1"
        sent = endpoint.received[-1]["params"]
        assert sent["target"] == {"context": "ctx"} and sent["awaitPromise"] is True
        with pytest.raises(BidiScriptError, match="script threw: Error: boom"):
            bidi.evaluate("throw", "ctx")


def test_new_session_sends_accept_insecure_certs(endpoint: FakeEndpoint) -> None:
    with BidiSession(endpoint.url, timeout=5) as bidi:
        assert bidi.new_session(accept_insecure_certs=True) == {"browserName": "fake"}
        assert bidi.session_id == "s1"
    first = endpoint.received[0]
    assert first["method"] == "session.new"
    assert first["params"] == {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}}
    assert endpoint.received[-1]["method"] == "session.end"  # close() ends the session


# -- value conversion --


def test_serialize_local_values() -> None:
    assert serialize({"a": [1, "x", None, True]}) == {
        "type": "object",
        "value": [["a", {"type": "array", "value": [
            {"type": "number", "value": 1}, {"type": "string", "value": "x"},
            {"type": "null"}, {"type": "boolean", "value": True}]}]],
    }
    assert serialize(math.nan) == {"type": "number", "value": "NaN"}
    assert serialize(Channel("c")) == {"type": "channel", "value": {"channel": "c"}}
    with pytest.raises(TypeError, match="cannot pass bytes"):
        serialize(b"x")


def test_deserialize_remote_values() -> None:
    remote = {"type": "object", "value": [
        ["list", {"type": "array", "value": [{"type": "number", "value": "-Infinity"},
                                             {"type": "undefined"}]}],
        ["big", {"type": "bigint", "value": "12345678901234567890"}],
        ["node", {"type": "node", "sharedId": "s1"}],
    ]}
    assert deserialize(remote) == {
        "list": [-math.inf, None],
        "big": 12345678901234567890,
        "node": RemoteReference(type="node", handle=None, shared_id="s1"),
    }


# -- profile helpers --


def test_user_js_and_proxy_prefs(tmp_path: Path) -> None:
    path = write_user_js(tmp_path, {**proxy_prefs(8123), "x.flag": True})
    text = path.read_text()
    assert 'user_pref("network.proxy.ssl_port", 8123);' in text
    assert 'user_pref("network.proxy.ssl", "127.0.0.1");' in text
    assert 'user_pref("x.flag", true);' in text


def test_native_manifests_copied_to_mozilla_folder(tmp_path: Path) -> None:
    source = tmp_path / "manifests"
    source.mkdir()
    (source / "com.example.host.json").write_text('{"name": "com.example.host"}')
    (source / "notes.txt").write_text("ignored")
    copied = install_native_manifests(tmp_path / "home", source)
    target = native_messaging_dir(tmp_path / "home")
    assert target == tmp_path / "home" / ".mozilla" / "native-messaging-hosts"
    assert copied == [target / "com.example.host.json"]


# -- CONNECT proxy --


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    # Wake the blocked accept() before closing: a thread left in accept() on a closed
    # descriptor can end up serving a later socket that reuses the descriptor number
    # (a later test's HTTP server then answers with this echo).
    with contextlib.suppress(OSError):
        server.shutdown(socket.SHUT_RDWR)
    thread.join(5)
    server.close()


def _proxy_request(port: int, head: bytes) -> tuple[bytes, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(head)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply, sock


def test_proxy_tunnels_mapped_authority(echo_port: int) -> None:
    with ConnectProxy(flattr_map(echo_port, echo_port)) as proxy:
        reply, sock = _proxy_request(
            proxy.port, b"CONNECT flattr.com:443 HTTP/1.1\r\nHost: flattr.com:443\r\n\r\n"
        )
        with sock:
            assert reply.startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"hello")
            assert sock.recv(5) == b"HELLO"
        assert proxy.records[0].authority == "flattr.com:443"
        assert proxy.records[0].target == ("127.0.0.1", echo_port)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"CONNECT example.org:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT flattr.com:80 HTTP/1.1\r\n\r\n", b"403"),
        (b"GET http://flattr.com/ HTTP/1.1\r\nHost: flattr.com\r\n\r\n", b"405"),
    ],
)
def test_proxy_refuses_everything_else(echo_port: int, head: bytes, status: bytes) -> None:
    with ConnectProxy(flattr_map(echo_port, echo_port)) as proxy:
        reply, sock = _proxy_request(proxy.port, head)
        sock.close()
        assert reply.split()[1] == status
        assert [r.status for r in proxy.refused] == [int(status)]


def test_proxy_map_must_stay_on_loopback() -> None:
    with pytest.raises(ProxyConfigError, match=r"flattr\.com:443 maps to 10\.0\.0\.1"):
        ConnectProxy({"flattr.com:443": ("10.0.0.1", 443)})
