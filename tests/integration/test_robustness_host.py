"""Hostile input and broken files against the real host process (the real launcher).

- lone surrogates, deep nesting and a complete request before a fatal header, at
  info and at debug level;
- a property fuzz test (hypothesis): arbitrary Unicode (surrogates included),
  nesting and sizes; every readable request gets exactly one reply, stdout holds
  frames only, the process lives on;
- a store whose data pages are garbled while the host runs on it (header and
  schema intact), and before it starts: kept aside, salvaged, fresh, signed out,
  said in the state, in ``status`` and ``doctor``;
- a broken queue row that makes every delivery fail: the state says so.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.damage import garble, queue_leaf_pages
from tests.support.host import HostProcess, frame, install_launcher

HELLO = {"extension": {"id": "x", "version": "1", "build": "t"}}
SURROGATE_URL = "https://example.com/\ud800"
LEVELS = ["info", "debug"]


def env(level: str = "debug") -> dict[str, str]:
    # Delivery goes nowhere (port 9 refuses) and backs off for an hour: the queue
    # stays where the test put it.
    return {"FLATTR_API_BASE": "http://127.0.0.1:9", "FLATTR_LOG_LEVEL": level,
            "FLATTR_RETRY_BASE_S": "3600", "FLATTR_SUBMIT_DELAY_S": "0"}


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    return install_launcher(tmp_path / "profile", tmp_path / "home")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(params=LEVELS)
def host(request: pytest.FixtureRequest, launcher: Path, home: Path) -> Iterator[HostProcess]:
    process = HostProcess(launcher, home, env=env(request.param))
    yield process
    process.kill()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def log_lines(home: Path) -> list[dict[str, Any]]:
    text = (home / "logs" / "host.log").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flattr_host", *args], capture_output=True,
                          text=True, env={**os.environ, "FLATTR_HOST_HOME": str(home)},
                          timeout=60)


# -- hostile requests ------------------------------------------------------------------

def test_surrogates_and_deep_nesting_get_invalid_request_and_the_host_lives(
        host: HostProcess, home: Path) -> None:
    assert host.request("hello", **HELLO)["ok"]
    cases = [
        ({"type": "attention-page", "url": SURROGATE_URL}, "field 'url' is not valid Unicode"),
        ({"type": "flattr", "manual": True, "urls": [SURROGATE_URL]},
         "field 'urls[0]' is not valid Unicode"),
        ({"type": "attention-signals", "signals": [
            {"signal": "tab-activated", "tabId": 1, "windowId": 1, "incognito": False,
             "url": SURROGATE_URL}]}, "field 'signals[0].url' is not valid Unicode"),
        ({"type": "get-state", "x": nested(900)}, "nests deeper than the limit of 16"),
    ]
    for fields, message in cases:
        reply = host.request(str(fields.pop("type")), **fields)
        assert reply["error"]["code"] == "invalid_request", reply
        assert message in reply["error"]["message"]
    assert host.request("get-state")["ok"] is True
    host.close_stdin()
    assert host.wait() == 0
    assert not [x for x in log_lines(home) if x["level"] == "error"]


def test_a_request_in_the_same_read_as_an_over_cap_header_is_answered_first(
        host: HostProcess) -> None:
    host.send_raw(frame({"id": 5, "type": "get-state"}) + struct.pack("=I", 2 * 1024 * 1024))
    first = host.recv()
    while "event" in first:
        first = host.recv()
    assert first["id"] == 5 and first["ok"] is True
    last = host.recv()
    while "event" in last:
        last = host.recv()
    assert last["id"] is None and last["error"]["code"] == "too_large"
    assert host.wait() == 3


def test_a_1_mib_frame_is_logged_at_debug_in_a_bounded_line(launcher: Path,
                                                            home: Path) -> None:
    process = HostProcess(launcher, home, env=env("debug"))
    try:
        body = b'{"id":1,"type":"get-state","x":[' + b",".join([b"{}"] * 349_000) + b"]}"
        process.send(body)
        assert process.recv(30)["ok"] is True
        process.close_stdin()
        assert process.wait(30) == 0
    finally:
        process.kill()
    (line,) = [x for x in log_lines(home) if x["msg"] == "frame in"]
    assert line["bytes"] == len(body) and line["truncated"] is True
    assert len(json.dumps(line)) < 16 * 1024


# -- the fuzz test ---------------------------------------------------------------------

_chars = st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
_text = st.text(_chars, max_size=40)


def _containers(inner: Any) -> Any:
    return st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4)


_json: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(
        allow_nan=False, allow_infinity=False) | _text,
    _containers, max_leaves=12,
)
_types = st.sampled_from(["hello", "get-state", "set-token", "set-subscription", "flattr",
                          "flush", "attention-signals", "attention-page",
                          "attention-settings", "attention-site", "attention-count-all",
                          "sign-out"]) | _text
# Plausible shapes with hostile text inside, so the fuzz reaches the handlers.
_lone = st.sampled_from(["", "\ud800", "\udbff", "\udc00", "\udfff"])
_url = st.builds(lambda host, path, lone: f"https://{host}.example/{path}{lone}",
                 st.sampled_from(["a", "blog", "www.news"]), _text, _lone)
_signal = st.fixed_dictionaries({
    "signal": st.sampled_from(["tab-activated", "url-changed", "load-finished",
                               "audible-changed", "tab-closed", "window-focus", "idle",
                               "activity", "reset"]),
    "tabId": st.integers(0, 5), "windowId": st.integers(0, 2), "url": _url | _text,
    "incognito": st.booleans(), "audible": st.booleans(), "muted": st.booleans(),
    "state": st.sampled_from(["active", "idle", "locked"]) | _text,
})
_typed = st.one_of(
    st.tuples(st.just("attention-page"), st.fixed_dictionaries({"url": _url})),
    st.tuples(st.just("flattr"), st.fixed_dictionaries(
        {"urls": st.lists(_url, min_size=1, max_size=3), "manual": st.booleans()})),
    st.tuples(st.just("attention-signals"), st.fixed_dictionaries(
        {"signals": st.lists(_signal, min_size=1, max_size=3)})),
    st.tuples(st.just("attention-site"), st.fixed_dictionaries(
        {"site": _text | st.just("blog.example"), "enabled": st.booleans()})),
    st.tuples(st.just("attention-count-all"), st.fixed_dictionaries({"enabled": st.booleans()})),
    st.tuples(st.just("hello"), st.fixed_dictionaries({"extension": st.fixed_dictionaries(
        {"id": _text, "version": _text, "build": _text})})),
    st.tuples(st.just("set-subscription"), st.fixed_dictionaries(
        {"subscription": st.fixed_dictionaries({"active": st.booleans()})})),
    st.tuples(st.sampled_from(["get-state", "flush", "attention-settings"]), st.just({})),
)
_ids = st.integers(0, 10**6) | st.none() | _text | st.integers(-5, 2**60) | st.booleans()


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["typed", "typed", "typed", "request", "raw", "deep", "big"]))
    if kind == "raw":  # not UTF-8, not JSON, not an object
        return draw(st.binary(max_size=64) | st.just(b"[1, 2]") | st.just(b'"\\ud800"'))
    if kind == "typed":  # a well-formed request of a known type, hostile text inside
        kind_name, fields = draw(_typed)
        typed = {"id": draw(st.integers(0, 10**6)), "type": kind_name, **fields}
        return json.dumps(typed).encode()
    message: dict[str, Any] = draw(st.dictionaries(_text, _json, max_size=4))
    message["id"] = draw(_ids)
    message["type"] = draw(_types)
    for key in draw(st.lists(st.sampled_from(["url", "urls", "signals", "site", "enabled",
                                              "manual", "accessToken", "subscription",
                                              "extension"]), max_size=3)):
        if key == "url":
            message[key] = draw(_url | _json)
        elif key == "urls":
            message[key] = draw(st.lists(_url | _text, min_size=1, max_size=3))
        elif key == "manual":
            message[key] = draw(st.booleans())
        elif key == "signals":
            message[key] = draw(st.lists(_signal | _json, min_size=1, max_size=3))
        else:
            message[key] = draw(_json)
    if kind == "deep":
        message["x"] = nested(draw(st.integers(10, 1500)))
    if kind == "big":
        message["pad"] = "p" * draw(st.integers(10_000, 400_000))
    return json.dumps(message).encode()  # ensure_ascii: surrogates as \\u escapes


def test_fuzzed_requests_each_get_one_reply_and_the_host_lives(launcher: Path,
                                                               home: Path) -> None:
    process = HostProcess(launcher, home, env=env("debug"))
    probes = iter(range(2**53 - 1, 0, -1))

    @settings(max_examples=100, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(payload=_frames())
    @example(payload=json.dumps({"id": 1, "type": "attention-page",
                                 "url": SURROGATE_URL}).encode())
    @example(payload=json.dumps({"id": 2, "type": "flattr", "manual": True,
                                 "urls": [SURROGATE_URL]}).encode())
    @example(payload=json.dumps({"id": 3, "type": "get-state", "x": nested(900)}).encode())
    def one(payload: bytes) -> None:
        probe = next(probes)
        process.send_raw(frame(payload) + frame({"id": probe, "type": "get-state"}))
        answers: list[dict[str, Any]] = []
        while True:
            message = process.recv(30)  # raises on anything that is not a frame
            if "event" in message:
                continue
            if message.get("id") == probe:
                assert message["ok"] is True
                break
            answers.append(message)
        assert len(answers) == 1, answers  # exactly one reply per readable request
        try:
            sent = json.loads(payload)
        except ValueError:
            sent = None
        if answers[0]["id"] is not None:
            assert isinstance(sent, dict) and answers[0]["id"] == sent["id"]
        assert process.proc.poll() is None

    try:
        one()
        assert process.proc.poll() is None
        process.close_stdin()
        assert process.wait(30) == 0
        assert process.proc.stdout is not None
        rest = process.proc.stdout.read()
        while rest:  # whatever is left is whole frames (late state events)
            (size,) = struct.unpack("=I", rest[:4])
            json.loads(rest[4:4 + size])
            rest = rest[4 + size:]
    finally:
        process.kill()


# -- a damaged store -------------------------------------------------------------------

URLS = [f"https://site{i}.example/{'p' * 60}/{i}" for i in range(600)]


def fill(host: HostProcess) -> None:
    assert host.request("hello", **HELLO)["ok"]
    assert host.request("set-token", accessToken="tok-abcdef",
                        subscription={"active": True})["result"] == {"authenticated": True}
    assert host.request("attention-site", site="blog.example", enabled=True)["ok"]
    assert host.request("flattr", urls=URLS)["result"] == {"queued": len(URLS)}
    # Until every item was tried once (port 9 refuses) and backs off: the host is
    # idle, no transaction in flight whose cached pages could overwrite the damage.
    host.wait_event(lambda s: s["queue"]["inFlight"] == 0 and s["queue"]["pending"] == len(URLS)
                    and (s["queue"]["nextAttemptAt"] or 0) > time.time() * 1000 + 1000,
                    timeout=30)


def assert_replaced(home: Path, state: dict[str, Any]) -> None:
    problem = state["problem"]
    assert problem["code"] == "store_replaced", state
    assert state["authenticated"] is False and state["queue"]["paused"] == "signed_out"
    salvaged = problem["salvaged"]["pending"]
    assert 0 < salvaged < len(URLS) and state["queue"]["pending"] == salvaged
    assert f"{salvaged} pending flattrs were saved" in problem["message"]
    kept = list(home.glob("host.db.corrupt-*"))
    assert [p.name for p in kept] == [Path(problem["kept"]).name]
    conn = sqlite3.connect(home / "host.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT site FROM attention_site").fetchall() == [("blog.example",)]
    finally:
        conn.close()


@pytest.mark.parametrize("level", LEVELS)
def test_data_pages_garbled_under_a_running_host(launcher: Path, home: Path,
                                                 level: str) -> None:
    process = HostProcess(launcher, home, env=env(level))
    try:
        fill(process)
        leaves = queue_leaf_pages(home / "host.db")
        garble(home / "host.db", leaves[2:4])
        # Any request that reads the damaged pages finds it (flush rewrites every
        # pending row); it fails, the store is replaced, the state says so.
        reply = process.request("flush")
        if not reply["ok"]:
            assert reply["error"]["code"] == "internal"
        process.wait_event(lambda s: s["problem"] is not None, timeout=30)
        state = process.request("get-state")["result"]
        assert_replaced(home, state)
        assert process.proc.poll() is None
        status = cli(home, "status")
        assert status.returncode == 0
        assert "problem          the store was damaged and has been replaced" in status.stdout
        # Signing in again answers the note; the salvaged flattrs are still queued.
        assert process.request("set-token", accessToken="tok-second")["result"] == {
            "authenticated": True}
        state = process.request("get-state")["result"]
        assert state["problem"] is None and state["queue"]["pending"] > 0
        process.close_stdin()
        assert process.wait(30) == 0
    finally:
        process.kill()
    text = (home / "logs" / "host.log").read_text()
    assert "store was damaged; kept aside and replaced by a fresh one" in text
    assert "site1.example" not in text or level == "debug"


def test_a_store_damaged_while_no_host_ran_is_replaced_after_start(launcher: Path,
                                                                   home: Path) -> None:
    first = HostProcess(launcher, home, env=env())
    try:
        fill(first)
        first.close_stdin()
        assert first.wait(30) == 0
    finally:
        first.kill()
    garble(home / "host.db", queue_leaf_pages(home / "host.db")[3:5])
    doctor = cli(home, "doctor", "--skip-api", "--browser", "chromium")
    assert "is damaged" in doctor.stdout
    second = HostProcess(launcher, home, env=env())
    try:
        assert second.request("hello", **HELLO)["ok"]
        # The integrity check runs after the first reply, on the submitter's thread.
        event = second.wait_event(lambda s: s["problem"] is not None, timeout=30)
        assert_replaced(home, event["state"])
        assert_replaced(home, second.request("get-state")["result"])
    finally:
        second.kill()


# -- a thread that keeps failing -------------------------------------------------------

def test_a_delivery_that_keeps_failing_is_said_in_the_state_and_in_status(
        launcher: Path, home: Path) -> None:
    process = HostProcess(launcher, home, env={**env(), "FLATTR_RETRY_BASE_S": "0"})
    try:
        assert process.request("hello", **HELLO)["ok"]
        conn = sqlite3.connect(home / "host.db", timeout=30)
        # A row no code path expects: its attempt counter is text.
        conn.execute("INSERT INTO queue (url, status, created_at, updated_at, attempts, "
                     "next_attempt_at) VALUES ('https://a.example/', 'pending', "
                     "strftime('%s','now'), 0, 'many', 0)")
        conn.execute("UPDATE queue_counts SET n = n + 1 WHERE status = 'pending'")
        conn.commit()
        conn.close()
        assert process.request("set-token", accessToken="tok-abcdef",
                               subscription={"active": True})["ok"]
        event = process.wait_event(lambda s: s["problem"] is not None, timeout=30)
        problem = event["state"]["problem"]
        assert problem["code"] == "delivery_stopped" and "TypeError" in problem["message"]
        assert process.request("get-state")["result"]["problem"]["code"] == "delivery_stopped"
        status = cli(home, "status")
        assert f"host {process.proc.pid}: delivery failed by an internal error" in status.stdout
        doctor = cli(home, "doctor", "--skip-api", "--browser", "chromium")
        assert "FAIL  no problem reported" in doctor.stdout
    finally:
        process.kill()


# -- failures keep their whole reason ----------------------------------------------------

def test_a_tls_failure_is_logged_with_its_whole_reason(launcher: Path, home: Path,
                                                       site: Any) -> None:
    # The real fake API over real HTTPS, without its CA: verification fails.
    process = HostProcess(launcher, home, env={
        "FLATTR_API_BASE": site.api, "FLATTR_LOG_LEVEL": "info", "FLATTR_SUBMIT_DELAY_S": "0",
        "FLATTR_RETRY_BASE_S": "3600"})
    try:
        assert process.request("hello", **HELLO)["ok"]
        assert process.request("set-token", accessToken="tok-abcdef",
                               subscription={"active": True})["ok"]
        assert process.request("flattr", urls=["https://a.example/"])["ok"]
        deadline = time.monotonic() + 30
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # waiting for a log line, not for a backoff
            lines = [x for x in log_lines(home) if x["msg"] == "delivery failed"]
            if lines:
                break
            time.sleep(0.05)
    finally:
        process.kill()
    assert lines, "no delivery failure was logged"
    reason = lines[0]["reason"]
    assert "CERTIFICATE_VERIFY_FAILED" in reason and "certificate verify failed" in reason
    assert reason.startswith("POST /rest/v2/flattr/bulk: ")
