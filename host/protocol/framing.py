"""Native messaging frames: a sans-I/O codec.

A frame is a 4-byte unsigned length in native byte order followed by that many
bytes of UTF-8 JSON (Chrome and Firefox native messaging docs). This module only
turns bytes into payloads and values into bytes: it never touches a file
descriptor, so it is tested without processes.
"""

from __future__ import annotations

import json
import struct

from flattr_host.core.errors import FrameTooLarge, InvalidFrame, TruncatedFrame

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct("=I")

#: Chrome closes the port when a host sends a frame over 1 MiB
#: ("Error when communicating with the native messaging host.").
OUTBOUND_LIMIT = 1024 * 1024

#: Default cap for frames from the browser; Chrome itself allows up to 64 MiB.
DEFAULT_INBOUND_LIMIT = 1024 * 1024


class Decoder:
    """Turns a byte stream into frame payloads, buffering partial frames.

    ``feed`` returns the payloads completed by the new bytes, in order. A length
    header over the limit breaks the stream for good (it cannot be resynchronised):
    the payloads completed before it in the same ``feed`` are still returned, and
    :attr:`broken` holds the :class:`FrameTooLarge`; a ``feed`` that completes no
    payload first raises it, and so does every later ``feed``.
    """

    def __init__(self, limit: int = DEFAULT_INBOUND_LIMIT) -> None:
        if limit < 0:
            raise ValueError(f"inbound limit must be >= 0, got {limit}")
        self._limit = limit
        self._buffer = bytearray()
        self._broken: FrameTooLarge | None = None

    @property
    def broken(self) -> FrameTooLarge | None:
        """The error that ended the stream, or None while it is readable."""
        return self._broken

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a payload."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` to the stream; return every payload it completes."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        payloads: list[bytes] = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > self._limit:
                self._broken = FrameTooLarge(size, self._limit)
                if payloads:
                    return payloads  # answer the complete requests before it first
                raise self._broken
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            payloads.append(bytes(self._buffer[HEADER.size : end]))
            del self._buffer[:end]
        return payloads

    def close(self) -> None:
        """Declare the end of the stream; raise if it stopped inside a frame."""
        if self._buffer and self._broken is None:
            raise TruncatedFrame(f"stream ended inside a frame ({len(self._buffer)} bytes left)")


def parse_payload(payload: bytes) -> dict[str, Any]:
    """Decode one payload into a JSON object, or raise :class:`InvalidFrame`."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFrame(f"frame is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidFrame(f"frame is not JSON ({exc})") from None
    except RecursionError:
        raise InvalidFrame("frame is JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidFrame(f"frame must hold a JSON object, got {type(value).__name__}")
    return value


# One encoder for every frame: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(message: dict[str, Any], limit: int = OUTBOUND_LIMIT) -> bytes:
    """Encode ``message`` as one frame; raise :class:`FrameTooLarge` over ``limit``."""
    return _frame(_ENCODER.encode(message).encode("utf-8"), limit)


def encode_json(value: object) -> bytes:
    """``value`` as the UTF-8 JSON text a frame would carry it in (no header)."""
    return _ENCODER.encode(value).encode("utf-8")


def encode_ok(request_id: int, result_json: bytes, limit: int = OUTBOUND_LIMIT) -> bytes:
    """The frame of ``messages.ok(request_id, result)`` from the result's
    :func:`encode_json` text: byte for byte what :func:`encode` makes of it.

    A reply repeating the previous reply's result (an unchanged State) then costs
    no encoding at all (runtime.stdio.FrameWriter.send_ok)."""
    return _frame(b'{"id":%d,"ok":true,"result":%b}' % (request_id, result_json), limit)


def _frame(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise FrameTooLarge(len(data), limit)
    return HEADER.pack(len(data)) + data
