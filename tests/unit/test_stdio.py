"""The I/O edge in-process: oversized replies and state-event de-duplication."""

from __future__ import annotations

import io
import os
from pathlib import Path

from flattr_host.core.logs import Logger
from flattr_host.protocol import framing
from flattr_host.runtime.stdio import FrameWriter


def raw_frames(fd: int) -> bytes:
    """Everything written to the pipe so far."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    return data


def read_frames(fd: int) -> list[dict[str, object]]:
    decoder = framing.Decoder(limit=4 * 1024 * 1024)
    return [framing.parse_payload(p) for p in decoder.feed(raw_frames(fd))]


def test_oversized_reply_becomes_an_internal_error(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    log = Logger(tmp_path, "info", stderr=io.StringIO())
    writer = FrameWriter(write_fd, log)
    writer.send({"id": 7, "ok": True, "result": {"blob": "x" * (framing.OUTBOUND_LIMIT + 1)}})
    frames = read_frames(read_fd)
    assert frames == [{"id": 7, "ok": False, "error": {
        "code": "internal", "message": "internal error; see the host log"}}]
    assert "too large for the browser" in (tmp_path / "host.log").read_text()
    os.close(read_fd)
    os.close(write_fd)


def test_identical_state_events_are_sent_once(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    writer = FrameWriter(write_fd, Logger(None, "info", stderr=io.StringIO()))
    writer.state({"a": 1})
    writer.state({"a": 1})
    writer.state({"a": 2})
    assert read_frames(read_fd) == [{"event": "state", "state": {"a": 1}},
                                    {"event": "state", "state": {"a": 2}}]
    os.close(read_fd)
    os.close(write_fd)


def test_closed_pipe_marks_the_writer_broken(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    writer = FrameWriter(write_fd, Logger(None, "info", stderr=io.StringIO()))
    writer.send({"id": 1, "ok": True, "result": {}})
    assert writer.broken
    os.close(write_fd)


def test_state_listeners_see_each_state_sent_and_cannot_break_the_writer(
        tmp_path: Path) -> None:
    """The writer's hook (the live inspector's way in): called after each state frame,
    never for a repeat; a listener that raises is logged and the others still run."""
    read_fd, write_fd = os.pipe()
    log = Logger(tmp_path, "info", stderr=io.StringIO())
    writer = FrameWriter(write_fd, log)
    seen: list[dict[str, object]] = []

    def broken(_state: dict[str, object]) -> None:
        raise RuntimeError("listener bug")

    writer.add_state_listener(broken)
    writer.add_state_listener(seen.append)
    state_method = FrameWriter.state
    writer.state({"a": 1})
    writer.state({"a": 1})
    writer.state({"a": 2})
    assert seen == [{"a": 1}, {"a": 2}]
    assert read_frames(read_fd) == [{"event": "state", "state": {"a": 1}},
                                    {"event": "state", "state": {"a": 2}}]
    assert "state" not in vars(writer) and FrameWriter.state is state_method
    assert "a state listener failed" in (tmp_path / "host.log").read_text()
    os.close(read_fd)
    os.close(write_fd)


def test_a_reply_spliced_from_its_result_is_the_reply_encoded_whole() -> None:
    results = [{}, {"a": [1, 2.5, None, True]}, {"ü": "ß\u2028", "n": {"x": "é"}},
               {"s": "\"\\/\n"}]
    for request_id in (0, 7, 2**53 - 1):
        for result in results:
            whole = framing.encode({"id": request_id, "ok": True, "result": result})
            spliced = framing.encode_ok(request_id, framing.encode_json(result))
            assert spliced == whole


def test_send_ok_reuses_the_encoding_of_the_same_result_object_only(tmp_path: Path) -> None:
    """The service returns one State object while nothing changed: its JSON is encoded
    once. Another object, even an equal one, is encoded afresh."""
    read_fd, write_fd = os.pipe()
    writer = FrameWriter(write_fd, Logger(tmp_path, "debug", stderr=io.StringIO()))
    state = {"queue": {"pending": 1}}
    calls: list[object] = []
    real = framing.encode_json

    def counting(value: object) -> bytes:
        calls.append(value)
        return real(value)

    framing.encode_json = counting  # type: ignore[assignment]
    try:
        writer.send_ok(1, state)
        writer.send_ok(2, state)
        changed = {"queue": {"pending": 2}}
        writer.send_ok(3, changed)
    finally:
        framing.encode_json = real
    assert calls == [state, changed]
    assert raw_frames(read_fd) == b"".join([
        framing.encode({"id": 1, "ok": True, "result": {"queue": {"pending": 1}}}),
        framing.encode({"id": 2, "ok": True, "result": {"queue": {"pending": 1}}}),
        framing.encode({"id": 3, "ok": True, "result": {"queue": {"pending": 2}}})])
    assert (tmp_path / "host.log").read_text().count('"frame out"') == 3  # debug shows each
    os.close(read_fd)
    os.close(write_fd)


def test_send_ok_of_an_oversized_result_becomes_an_internal_error(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    writer = FrameWriter(write_fd, Logger(tmp_path, "info", stderr=io.StringIO()))
    writer.send_ok(9, {"blob": "x" * framing.OUTBOUND_LIMIT})
    assert read_frames(read_fd) == [{"id": 9, "ok": False, "error": {
        "code": "internal", "message": "internal error; see the host log"}}]
    os.close(read_fd)
    os.close(write_fd)
