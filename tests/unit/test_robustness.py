"""No input and no broken row may stop the host: validation, logging, the loop (in-process).

The message loop runs on real pipes in a thread (the process tests in
tests/integration/test_robustness_host.py run the real launcher); every case runs
at info and at debug level, since debug logging walks whole frames.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from flattr_host.core import health
from flattr_host.core.config import Config
from flattr_host.core.errors import FrameTooLarge, RequestError
from flattr_host.core.logs import PREVIEW_NODES, Logger, preview, redact
from flattr_host.protocol import framing, urls
from flattr_host.protocol import messages as m
from flattr_host.runtime.stdio import EXIT_OK, EXIT_TOO_LARGE, Loop

LEVELS = ["info", "debug"]
SURROGATE_URL = "https://example.com/\ud800"


def frame(message: dict[str, Any] | bytes) -> bytes:
    """A frame as the browser writes it; surrogates go as JSON escapes (valid JSON)."""
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return framing.HEADER.pack(len(data)) + data


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class Run:
    """One message loop on pipes: frames in, frames and log out."""

    def __init__(self, home: Path, level: str) -> None:
        self.home = home
        self.config = Config(home=str(home), api_base="http://127.0.0.1:9", log_level=level,
                             retry_base_s=3600.0)
        self.log = Logger(self.config.log_dir, level, stderr=io.StringIO())

    def __call__(self, data: bytes) -> tuple[int, list[dict[str, Any]]]:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        loop = Loop(self.config, self.log, out_w, in_fd=in_r)
        status: list[int] = []
        out = bytearray()

        def feed() -> None:
            try:
                os.write(in_w, data)
            except OSError:
                pass  # the loop exited early (too_large): the rest is not read
            os.close(in_w)

        def drain() -> None:
            while chunk := os.read(out_r, 1 << 20):
                out.extend(chunk)

        threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
        for thread in threads:
            thread.start()
        status.append(loop.run())
        os.close(out_w)
        for thread in threads:
            thread.join(30)
        os.close(in_r)
        os.close(out_r)
        decoder = framing.Decoder(limit=4 * 1024 * 1024)
        frames = [json.loads(p) for p in decoder.feed(bytes(out))]
        assert decoder.buffered == 0, "stdout holds bytes that are not frames"
        return status[0], frames

    def log_lines(self) -> list[dict[str, Any]]:
        text = (self.home / "logs" / "host.log").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


def replies(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if "event" not in f]


# -- validation ------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "field"), [
    ({"id": 1, "type": "attention-page", "url": SURROGATE_URL}, "url"),
    ({"id": 1, "type": "flattr", "manual": True, "urls": [SURROGATE_URL]}, "urls[0]"),
    ({"id": 1, "type": "flattr", "urls": ["https://a.example/", SURROGATE_URL]}, "urls[1]"),
    ({"id": 1, "type": "attention-signals", "signals": [
        {"signal": "tab-activated", "tabId": 1, "windowId": 1, "incognito": False,
         "url": SURROGATE_URL}]}, "signals[0].url"),
    ({"id": 1, "type": "get-state", "extra": {"deep": ["\udfff"]}}, "extra.deep[0]"),
    ({"id": 1, "type": "hello\udc80"}, "type"),
])
def test_a_lone_surrogate_is_refused_naming_the_field(message: dict[str, Any],
                                                      field: str) -> None:
    payload = json.dumps(message).encode()
    for given in (payload, None):  # with the byte pre-check and without it
        with pytest.raises(RequestError) as caught:
            m.parse_request(json.loads(payload), given)
        assert caught.value.code == m.INVALID_REQUEST
        assert caught.value.request_id == 1
        assert caught.value.message.startswith(f"field '{field}' is not valid Unicode")
        caught.value.message.encode("utf-8")  # the reply itself can be written


def test_a_surrogate_in_a_field_name_is_refused_and_the_message_stays_encodable() -> None:
    message = json.loads(r'{"id": 4, "type": "get-state", "k\udc00": 1}')
    with pytest.raises(RequestError) as caught:
        m.parse_request(message)
    assert caught.value.message.startswith("field name 'k\\udc00' is not valid Unicode")


def test_nesting_over_the_limit_is_refused_with_the_limit_and_within_it_is_fine() -> None:
    deep = {"id": 2, "type": "get-state", "x": nested(m.MAX_NESTING - 1)}
    assert m.parse_request(deep, json.dumps(deep).encode()).type == "get-state"
    deeper = {"id": 2, "type": "get-state", "x": nested(900)}
    with pytest.raises(RequestError) as caught:
        m.parse_request(deeper, json.dumps(deeper).encode())
    assert caught.value.code == m.INVALID_REQUEST
    assert f"nests deeper than the limit of {m.MAX_NESTING} levels" in caught.value.message


def test_valid_non_ascii_text_passes() -> None:
    message = {"id": 3, "type": "flattr", "urls": ["https://ex.example/caf\u00e9/\U0001f600"]}
    assert m.parse_request(message, json.dumps(message).encode()).type == "flattr"


# -- logging ---------------------------------------------------------------------------

def test_redaction_of_very_deep_values_does_not_recurse_without_bound() -> None:
    shown = redact({"a": nested(5000), "token": "secret-value"})
    assert shown["token"] == "[redacted]"
    assert "nested deeper than" in json.dumps(shown)


def test_a_log_line_with_a_surrogate_or_a_broken_object_is_still_written(tmp_path: Path) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    log = Logger(tmp_path, "debug", stderr=io.StringIO())
    log.debug("one", url=SURROGATE_URL)
    log.warning("two", thing=Broken())
    lines = [json.loads(x) for x in (tmp_path / "host.log").read_text().splitlines()]
    assert lines[0]["url"] == SURROGATE_URL  # written as the \ud800 escape, read back
    assert lines[1]["msg"] == "two" and "RuntimeError: no text" in lines[1]["log_error"]


def test_preview_is_bounded_and_says_what_it_cut() -> None:
    shown, cut = preview({"id": 1, "x": [{} for _ in range(350_000)], "accessToken": "abcd"})
    assert cut
    assert len(json.dumps(shown)) < 8192
    assert "more items]" in json.dumps(shown)
    long, cut = preview({"url": "u" * 100_000})
    assert cut and long["url"].endswith("...[99488 more chars]")
    small, cut = preview({"id": 1, "accessToken": "abcd", "h": "Bearer xyz"})
    assert not cut and small == {"id": 1, "accessToken": "[redacted]", "h": "Bearer [redacted]"}
    assert PREVIEW_NODES == 200


# -- framing ---------------------------------------------------------------------------

def test_a_complete_frame_before_an_over_cap_header_is_returned_first() -> None:
    decoder = framing.Decoder(limit=1000)
    data = frame({"id": 1, "type": "get-state"}) + framing.HEADER.pack(5000)
    payloads = decoder.feed(data)
    assert [json.loads(p)["id"] for p in payloads] == [1]
    assert isinstance(decoder.broken, FrameTooLarge)
    with pytest.raises(FrameTooLarge, match="frame of 5000 bytes exceeds limit of 1000"):
        decoder.feed(b"")


# -- the loop --------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_hostile_requests_each_get_one_reply_and_the_loop_goes_on(tmp_path: Path,
                                                                 level: str) -> None:
    run = Run(tmp_path / "home", level)
    sent = [
        {"id": 1, "type": "attention-page", "url": SURROGATE_URL},
        {"id": 2, "type": "flattr", "manual": True, "urls": [SURROGATE_URL]},
        {"id": 3, "type": "get-state", "x": nested(900)},
        {"id": 4, "type": "attention-signals", "signals": [
            {"signal": "tab-activated", "tabId": 1, "windowId": 1, "incognito": False,
             "url": "https://example.com/\udbff"}]},
        {"id": 5, "type": "get-state"},
    ]
    status, frames = run(b"".join(frame(x) for x in sent))
    assert status == EXIT_OK
    got = replies(frames)
    assert [r["id"] for r in got] == [1, 2, 3, 4, 5]
    assert [r["error"]["code"] for r in got[:4]] == [m.INVALID_REQUEST] * 4
    assert "field 'url' is not valid Unicode" in got[0]["error"]["message"]
    assert "nests deeper than the limit" in got[2]["error"]["message"]
    assert got[4]["ok"] is True
    assert not any(line["level"] == "error" for line in run.log_lines())


@pytest.mark.parametrize("level", LEVELS)
def test_a_reply_that_cannot_be_encoded_becomes_internal_and_the_host_goes_on(
        tmp_path: Path, level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The second line of defence: suppose validation let a lone surrogate through.
    monkeypatch.setattr(m, "check_tree", lambda _message: None)
    monkeypatch.setattr(urls, "check_url_rules", lambda url, _field: url)
    run = Run(tmp_path / "home", level)
    sent = [{"id": 1, "type": "attention-page", "url": SURROGATE_URL},  # the reply echoes it
            {"id": 2, "type": "flattr", "urls": [SURROGATE_URL]},  # SQLite cannot bind it
            {"id": 3, "type": "get-state"}]
    status, frames = run(b"".join(frame(x) for x in sent))
    assert status == EXIT_OK
    got = replies(frames)
    assert [r["id"] for r in got] == [1, 2, 3]
    internal = {"code": "internal", "message": "internal error; see the host log"}
    assert got[0]["error"] == internal and got[1]["error"] == internal
    assert got[2]["ok"] is True and got[2]["result"]["queue"]["pending"] == 0
    assert any(line["msg"] == "reply not sent: it cannot be encoded" and "UnicodeEncodeError"
               in line["error"] for line in run.log_lines())


@pytest.mark.parametrize("level", LEVELS)
def test_a_request_complete_before_an_over_cap_header_is_answered(tmp_path: Path,
                                                                   level: str) -> None:
    run = Run(tmp_path / "home", level)
    data = frame({"id": 9, "type": "get-state"}) + framing.HEADER.pack(64 * 1024 * 1024)
    status, frames = run(data)
    assert status == EXIT_TOO_LARGE
    got = replies(frames)
    assert got[0]["id"] == 9 and got[0]["ok"] is True
    assert got[-1]["id"] is None and got[-1]["error"]["code"] == m.TOO_LARGE


def _peak_bytes(run: Run, data: bytes) -> int:
    tracemalloc.start()
    try:
        status, frames = run(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == EXIT_OK and replies(frames)[0]["ok"] is True
    return peak


def test_debug_logging_of_a_1_mib_frame_is_bounded_in_size_and_memory(tmp_path: Path) -> None:
    body = b'{"id":1,"type":"get-state","x":[' + b",".join([b"{}"] * 349_000) + b"]}"
    assert len(body) <= framing.DEFAULT_INBOUND_LIMIT
    data = frame(body)
    info = _peak_bytes(Run(tmp_path / "info", "info"), data)
    debug_run = Run(tmp_path / "debug", "debug")
    debug = _peak_bytes(debug_run, data)
    # Parsing the frame costs what it costs at any level; debug adds a bounded line.
    assert debug < info + 8 * 1024 * 1024, (info, debug)
    (line,) = [x for x in debug_run.log_lines() if x["msg"] == "frame in"]
    assert line["bytes"] == len(body) and line["truncated"] is True
    assert len(json.dumps(line)) < 16 * 1024


# -- attention: one bad row ------------------------------------------------------------

def test_one_unstorable_attention_row_is_rejected_alone(tmp_path: Path) -> None:
    from flattr_host.attention.service import AttentionService
    from flattr_host.storage.queue import Queue
    from flattr_host.storage.store import Store

    class Clock:
        t = 1000.0

        def __call__(self) -> float:
            return self.t

    mono = Clock()
    log = Logger(tmp_path / "logs", "info", stderr=io.StringIO())
    store = Store(tmp_path / "host.db", log)
    svc = AttentionService(store, log, monotonic=mono, timer=False)
    svc.set_count_all(True)

    def tab(tab_id: int, url: str) -> m.AttentionSignal:
        # Built directly, as if validation had let the URL through.
        return m.AttentionSignal("tab-activated", tab_id, 1, url, False, None, None, None)

    focus = m.AttentionSignal("window-focus", None, 1, None, None, None, None, None)
    activity = m.AttentionSignal("activity", None, None, None, None, None, None, None)
    svc.signals([focus, tab(1, "https://bad.example/\ud800")])
    for _ in range(6):
        mono.t += 10
        svc.signals([activity])
    svc.signals([tab(2, "https://good.example/page")])
    for _ in range(6):
        mono.t += 10
        svc.signals([activity])
    svc.tick()
    svc.close()
    queued = [item["url"] for item in Queue(store).items()]
    assert queued == ["https://good.example/page"]
    with store.read() as conn:
        urls = [r[0] for r in conn.execute("SELECT url FROM attention_page")]
    assert urls == ["https://good.example/page"]
    store.close()
    text = (tmp_path / "logs" / "host.log").read_text()
    assert "cannot be stored" in text and "UnicodeEncodeError" in text
    assert "saving attention failed" not in text  # nothing else was held back
    assert "bad.example" not in text  # a URL only at debug


def test_a_counter_with_a_number_sqlite_would_refuse_is_rejected_alone() -> None:
    from flattr_host.attention.service import _checked

    with pytest.raises(ValueError, match="attention_s must be a finite number"):
        _checked({"attention_s": math.nan, "audio_s": 0.0})
    assert _checked({"attention_s": 1.0, "audio_s": 0.0})["attention_s"] == 1.0


# -- threads that stop -----------------------------------------------------------------

def test_health_orders_problems_and_mirrors_them_for_other_processes(tmp_path: Path) -> None:
    seen: list[Any] = []
    board = health.Health()
    board.attach(tmp_path)
    board.add_listener(seen.append)
    board.report("inspector", "inspector_stopped", "x")
    board.report("submitter", "delivery_stopped", "y")
    assert board.current() is not None and board.current()["code"] == "delivery_stopped"
    found = health.running_problems(tmp_path)
    assert {p["code"] for p in found} == {"delivery_stopped", "inspector_stopped"}
    assert all(p["pid"] == os.getpid() for p in found)
    board.resolve("submitter")
    board.resolve("inspector")
    assert board.current() is None and seen[-1] is None
    assert health.running_problems(tmp_path) == []


class _Client:
    def post_bulk(self, token: str, urls: list[str]) -> Any:
        raise AssertionError("signed out: nothing is sent")

    def close(self) -> None:
        pass


def test_a_submitter_that_fails_to_start_says_so_and_is_restarted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flattr_host.delivery import submitter as submitter_mod

    monkeypatch.setattr(submitter_mod, "RESTART_BASE_S", 0.05)
    config = Config(home=str(tmp_path), api_base="http://127.0.0.1:9")
    log = Logger(config.log_dir, "info", stderr=io.StringIO())
    health.PROCESS.attach(tmp_path)
    made: list[int] = []
    reported = threading.Event()
    release = threading.Event()
    seen: list[Any] = []

    def listener(problem: Any) -> None:
        seen.append(problem)
        if problem is not None:
            reported.set()

    health.PROCESS.add_listener(listener)

    def factory() -> _Client:
        made.append(1)
        if len(made) == 1:
            raise OSError("CA bundle /nowhere/ca.pem: No such file or directory")
        release.set()
        return _Client()

    worker = submitter_mod.Submitter(config, log, lambda *_a: None, draw=lambda: 1.0,
                                     client_factory=factory)
    worker.start()
    try:
        assert reported.wait(10)
        problem = seen[0]
        assert problem["code"] == "delivery_stopped" and problem["component"] == "submitter"
        assert "CA bundle /nowhere/ca.pem" in problem["message"]
        assert health.running_problems(tmp_path)[0]["code"] == "delivery_stopped"
        assert release.wait(10)
        for _ in range(200):
            if health.PROCESS.current() is None:
                break
            threading.Event().wait(0.01)
        assert health.PROCESS.current() is None  # running again: the problem is gone
        assert health.running_problems(tmp_path) == []
    finally:
        assert worker.stop(5)
    text = (tmp_path / "logs" / "host.log").read_text()
    assert "submitter stopped by an internal error; restarting" in text


def test_the_full_reason_of_a_network_failure_is_logged(tmp_path: Path) -> None:
    from flattr_host.core.session import TokenStored
    from flattr_host.delivery.api import NetworkError
    from flattr_host.delivery.submitter import Submitter
    from flattr_host.storage.state import StateStore
    from flattr_host.storage.store import Store
    from flattr_host.storage.token_store import TokenStore

    reason = ("POST /rest/v2/flattr/bulk: SSLCertVerificationError: [SSL: "
              "CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
              "certificate in certificate chain (_ssl.c:1006)")
    sent = threading.Event()

    class Failing(_Client):
        def post_bulk(self, token: str, urls: list[str]) -> Any:
            sent.set()
            raise NetworkError(reason)

    config = Config(home=str(tmp_path), api_base="https://127.0.0.1:9", submit_delay_s=0.0,
                    retry_base_s=3600.0)
    log = Logger(config.log_dir, "info", stderr=io.StringIO())
    with Store(config.db_path, log) as store:
        tokens = TokenStore(store, config.key_path, log)
        StateStore(store, tokens).apply(TokenStored(True), token="tok-abcdef")
        from flattr_host.storage.queue import Queue

        Queue(store).enqueue(["https://a.example/"], now=__import__("time").time())
    worker = Submitter(config, log, lambda *_a: None, client_factory=Failing)
    worker.start()
    try:
        assert sent.wait(10)
        for _ in range(500):
            if "delivery failed" in (tmp_path / "logs" / "host.log").read_text():
                break
            threading.Event().wait(0.01)
    finally:
        assert worker.stop(5)
    (line,) = [json.loads(x) for x in (tmp_path / "logs" / "host.log").read_text().splitlines()
               if '"delivery failed"' in x]
    assert line["reason"] == reason


def test_the_attention_timer_restarts_after_an_error_and_says_so_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flattr_host.attention import service as svc_mod
    from flattr_host.storage.store import Store

    monkeypatch.setattr(svc_mod, "RESTART_BASE_S", 0.05)
    log = Logger(tmp_path / "logs", "info", stderr=io.StringIO())
    store = Store(tmp_path / "host.db", log)
    steps: list[int] = []
    reported = threading.Event()
    resolved = threading.Event()

    def listener(problem: Any) -> None:
        (reported if problem is not None else resolved).set()

    health.PROCESS.add_listener(listener)
    original = svc_mod.AttentionService._timer_step

    def flaky(self: Any) -> bool:
        steps.append(1)
        if len(steps) == 1:
            raise RuntimeError("engine bug")
        return bool(original(self))

    monkeypatch.setattr(svc_mod.AttentionService, "_timer_step", flaky)
    requests = Store(tmp_path / "host.db", log)  # the timer thread has its own connection
    svc = svc_mod.AttentionService(store, log, requests=requests, timer=True)
    try:
        assert reported.wait(10)
        assert health.PROCESS.problems()[0]["code"] == "attention_stopped"
        assert resolved.wait(10)
        assert health.PROCESS.current() is None
    finally:
        svc.close()
        requests.close()
        store.close()


def test_status_and_doctor_show_a_stopped_thread_and_the_store_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from flattr_host.storage.store import Store
    from flattr_host.tools import cli, doctor

    home = tmp_path / "home"
    monkeypatch.setenv("FLATTR_HOST_HOME", str(home))
    log = Logger(home / "logs", "info", stderr=io.StringIO())
    with Store(home / "host.db", log) as store, store.write() as conn:
        health.write_store_problem(conn, health.make("store_replaced", "the store was damaged"))
    running_host = health.Health()  # as a running host reports it, beside this process
    running_host.attach(home)
    running_host.report("submitter", "delivery_stopped", "delivery stopped by X")
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "problem          the store was damaged" in out
    assert f"problem          host {os.getpid()}: delivery stopped by X" in out
    assert cli.main(["status", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["problem"]["code"] == "store_replaced"
    assert state["hostProblems"][0]["message"] == "delivery stopped by X"
    check = doctor.check_problems(home / "host.db", home)
    assert not check.ok and "delivery stopped by X" in check.detail
    assert "the store was damaged" in check.detail and "sign in again" in check.fix
    running_host.resolve("submitter")
    with Store(home / "host.db", log) as store, store.write() as conn:
        health.clear_store_problem(conn)
    assert doctor.check_problems(home / "host.db", home).ok


def test_an_inspector_that_fails_after_start_is_restarted_and_says_so_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flattr_host.runtime import inspector as inspector_mod

    monkeypatch.setattr(inspector_mod, "RESTART_BASE_S", 0.05)
    original = inspector_mod.Inspector._serve
    calls: list[int] = []
    seen: list[Any] = []
    back = threading.Event()

    async def flaky(self: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # serves, then its event loop dies
            self.port = 1
            self._write_discovery()
            self._ready.set()
            raise RuntimeError("event loop died")
        await original(self)

    def listener(problem: Any) -> None:
        seen.append(problem)
        if problem is None:
            back.set()

    monkeypatch.setattr(inspector_mod.Inspector, "_serve", flaky)
    health.PROCESS.add_listener(listener)
    log = Logger(tmp_path / "logs", "info", stderr=io.StringIO())
    server = inspector_mod.Inspector(tmp_path, log, lambda _name: {})
    server.start()
    try:
        assert back.wait(10)
        assert seen[0]["code"] == "inspector_stopped"
        assert "RuntimeError: event loop died" in seen[0]["message"]
        found = json.loads(server.discovery.read_text())
        assert found["port"] == server.port and server.port != 1  # serving again
    finally:
        server.stop()
    assert not server.discovery.exists()


def test_a_submitter_that_cannot_even_start_is_reported_and_the_host_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flattr_host.delivery import submitter as submitter_mod

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise ImportError("cannot import name 'AESGCM'")

    monkeypatch.setattr(submitter_mod, "Submitter", broken)
    run = Run(tmp_path / "home", "info")
    sent = [{"id": 1, "type": "hello", "extension": {"id": "x", "version": "1", "build": "t"}},
            {"id": 2, "type": "flattr", "urls": ["https://a.example/"]},
            {"id": 3, "type": "get-state"}]
    status, frames = run(b"".join(frame(x) for x in sent))
    assert status == EXIT_OK
    got = replies(frames)
    assert [r["id"] for r in got] == [1, 2, 3] and all(r["ok"] for r in got)
    assert got[1]["result"] == {"queued": 1}
    problem = got[2]["result"]["problem"]
    assert problem["code"] == "delivery_stopped" and "AESGCM" in problem["message"]


def test_a_damage_error_the_check_does_not_confirm_pauses_like_any_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3
    import time

    from flattr_host.core.session import TokenStored
    from flattr_host.delivery import submitter as submitter_mod
    from flattr_host.storage.queue import Queue
    from flattr_host.storage.state import StateStore
    from flattr_host.storage.store import Store
    from flattr_host.storage.token_store import TokenStore

    monkeypatch.setattr(submitter_mod, "ERROR_PAUSE_S", 60.0)
    calls: list[int] = []
    reported = threading.Event()

    class Malformed(_Client):
        def post_bulk(self, token: str, urls: list[str]) -> Any:
            calls.append(1)
            error = sqlite3.DatabaseError("database disk image is malformed")
            error.sqlite_errorcode = 11  # type: ignore[attr-defined]
            raise error

    config = Config(home=str(tmp_path), api_base="http://127.0.0.1:9", submit_delay_s=0.0)
    log = Logger(config.log_dir, "info", stderr=io.StringIO())
    with Store(config.db_path, log) as store:
        StateStore(store, TokenStore(store, config.key_path, log)).apply(
            TokenStored(True), token="tok-abcdef")
        Queue(store).enqueue(["https://a.example/"], now=time.time())
    health.PROCESS.add_listener(lambda p: reported.set() if p else None)
    worker = submitter_mod.Submitter(config, log, lambda *_a: None, client_factory=Malformed)
    worker.start()
    try:
        assert reported.wait(10)
        assert "DatabaseError" in health.PROCESS.problems()[0]["message"]
    finally:
        assert worker.stop(5)
    assert calls == [1]  # paused after the error, no second try at once
    assert not list(tmp_path.glob("host.db.corrupt-*"))
