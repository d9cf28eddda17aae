"""The sans-I/O frame codec: splits, limits and garbage."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flattr_host.core.errors import FrameError, FrameTooLarge, InvalidFrame, TruncatedFrame
from flattr_host.protocol import framing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def test_round_trip_single_frame() -> None:
    data = framing.encode({"id": 1, "type": "hello"})
    assert framing.Decoder().feed(data) == [b'{"id":1,"type":"hello"}']


def test_header_is_native_byte_order_length() -> None:
    data = framing.encode({"a": "é"})
    (size,) = struct.unpack("=I", data[:4])
    assert size == len(data) - 4 == len('{"a":"é"}'.encode())


@given(st.lists(objects, min_size=1, max_size=6), st.data())
def test_any_split_decodes_to_the_same_messages(messages: list[dict[str, object]],
                                                 data: st.DataObject) -> None:
    stream = b"".join(framing.encode(message) for message in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = framing.Decoder()
    decoded: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoded += decoder.feed(stream[start:cut])
        start = cut
    decoder.close()
    assert [framing.parse_payload(p) for p in decoded] == messages
    assert decoder.buffered == 0


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_codec_errors(blob: bytes) -> None:
    decoder = framing.Decoder(limit=1024)
    try:
        for payload in decoder.feed(blob):
            try:
                framing.parse_payload(payload)
            except InvalidFrame:
                pass
        decoder.close()
    except FrameError:
        pass


def test_partial_frame_is_buffered_until_complete() -> None:
    data = framing.encode({"x": 1})
    decoder = framing.Decoder()
    assert decoder.feed(data[:3]) == []
    assert decoder.feed(data[3:7]) == []
    assert decoder.buffered == 7
    assert decoder.feed(data[7:]) == [b'{"x":1}']


def test_oversized_header_raises_with_value_and_limit_and_stays_broken() -> None:
    decoder = framing.Decoder(limit=1024 * 1024)
    with pytest.raises(FrameTooLarge, match="frame of 2097152 bytes exceeds limit of 1048576"):
        decoder.feed(struct.pack("=I", 2 * 1024 * 1024))
    with pytest.raises(FrameTooLarge):
        decoder.feed(framing.encode({"ok": 1}))


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    payload = json.dumps({"p": "x" * 100}).encode()
    decoder = framing.Decoder(limit=len(payload))
    assert decoder.feed(struct.pack("=I", len(payload)) + payload) == [payload]


def test_close_inside_a_frame_raises() -> None:
    decoder = framing.Decoder()
    decoder.feed(framing.encode({"a": 1})[:5])
    with pytest.raises(TruncatedFrame, match=r"5 bytes left"):
        decoder.close()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{nope", "not JSON"),
        (b"[1, 2]", "JSON object, got list"),
        (b'"text"', "JSON object, got str"),
        (b"", "not JSON"),
        (b"[" * 100000 + b"]" * 100000, "JSON"),
    ],
)
def test_invalid_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidFrame, match=message):
        framing.parse_payload(payload)


def test_encode_refuses_outbound_frames_over_chromes_limit() -> None:
    big = {"blob": "x" * framing.OUTBOUND_LIMIT}
    with pytest.raises(FrameTooLarge, match=f"exceeds limit of {framing.OUTBOUND_LIMIT}"):
        framing.encode(big)
    assert len(framing.encode({"blob": "x" * 1000})) < framing.OUTBOUND_LIMIT
