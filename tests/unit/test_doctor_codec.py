"""Doctor speaks through the host's own parts: the frame codec (flattr_host.protocol.framing)
for its hello, the token store's public functions for the token check."""

from __future__ import annotations

import ast
import sqlite3
import sys
from pathlib import Path

import pytest

from flattr_host.core.logs import Logger
from flattr_host.protocol import framing
from flattr_host.storage import token_store as ts
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import TokenStore
from flattr_host.tools import doctor

HOST = Path(__file__).resolve().parents[2] / "host"
HELLO_REPLY = {"id": 1, "ok": True, "result": {"host": {"version": "9.9", "protocol": 1}}}


def launcher(tmp_path: Path, body: str) -> Path:
    """A fake host: reads the hello frame with the real decoder, then runs ``body``
    with ``out`` (its binary stdout) and ``framing`` at hand."""
    path = tmp_path / "fake-host"
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys, struct\n"
        "from flattr_host.protocol import framing\n"
        "decoder = framing.Decoder()\n"
        "got = []\n"
        "while not got:\n"
        "    chunk = sys.stdin.buffer.read1(65536)\n"
        "    if not chunk: sys.exit(4)\n"
        "    got = decoder.feed(chunk)\n"
        "hello = framing.parse_payload(got[0])\n"
        "assert hello['type'] == 'hello' and hello['extension']['id'] == 'x' * 32, hello\n"
        "out = sys.stdout.buffer\n"
        f"{body}\n"
        "out.flush()\n"
    )
    path.chmod(0o755)
    return path


def hello(path: Path) -> doctor.Check:
    return doctor.check_hello(path, [], "x" * 32, 10.0, "flattr-host install")


def test_a_reply_in_pieces_is_one_frame(tmp_path: Path) -> None:
    """The decoder buffers: a frame written byte by byte still reads as one."""
    body = (f"data = framing.encode({HELLO_REPLY!r})\n"
            "import time\n"
            "for i in range(len(data)):\n"
            "    out.write(data[i:i + 1]); out.flush()\n"
            "    if i < 6: time.sleep(0.02)\n")
    check = hello(launcher(tmp_path, body))
    assert check.ok, check
    assert check.detail == "protocol 1, host 9.9"


def test_a_frame_over_the_browsers_limit_is_named(tmp_path: Path) -> None:
    size = framing.OUTBOUND_LIMIT + 1
    check = hello(launcher(tmp_path, f"out.write(struct.pack('=I', {size}) + b'{{}}')"))
    assert not check.ok
    assert "not a native messaging frame" in check.detail
    assert str(size) in check.detail and str(framing.OUTBOUND_LIMIT) in check.detail


def test_a_truncated_frame_is_named(tmp_path: Path) -> None:
    check = hello(launcher(tmp_path, "out.write(struct.pack('=I', 50) + b'{\"id\": 1')"))
    assert not check.ok
    assert "stream ended inside a frame" in check.detail


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"[1, 2]", b"{not json"])
def test_a_payload_that_is_not_an_object_is_not_a_reply(tmp_path: Path, payload: bytes) -> None:
    body = f"out.write(struct.pack('=I', {len(payload)}) + {payload!r})"
    check = hello(launcher(tmp_path, body))
    assert not check.ok and check.detail == "the reply is not a protocol reply"


def test_doctor_has_no_codec_of_its_own() -> None:
    tree = ast.parse((HOST / "tools" / "doctor.py").read_text("utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    assert "struct" not in imported
    assert not hasattr(doctor, "HEADER")


# -- the token: one implementation of unsealing, shared with the token store ----------

@pytest.fixture
def sealed_store(tmp_path: Path) -> tuple[Path, Path]:
    log = Logger(tmp_path / "logs", level="warning")
    store = Store(tmp_path / "host.db", log)
    tokens = TokenStore(store, tmp_path / "token.key", log, key_backend="file")
    sealed = tokens.seal("doctor-codec-token-1234")
    with store.write() as conn:
        TokenStore.put(conn, sealed)
    tokens.close()
    store.close()
    return tmp_path / "host.db", tmp_path / "token.key"


def test_unseal_names_a_wrong_key_and_a_forged_row(sealed_store: tuple[Path, Path]) -> None:
    db, key_path = sealed_store
    conn = sqlite3.connect(db)
    row = ts.read_sealed(conn)
    conn.close()
    assert row is not None
    key = key_path.read_bytes()
    assert ts.unseal(key, *row) == "doctor-codec-token-1234"
    with pytest.raises(ts.TokenUnreadable) as wrong:
        ts.unseal(bytes(32), *row)
    assert wrong.value.wrong_key
    forged = (row[0], row[1], bytes([row[2][0] ^ 1]) + row[2][1:])
    with pytest.raises(ts.TokenUnreadable) as bad:
        ts.unseal(key, *forged)
    assert not bad.value.wrong_key


def test_doctor_names_a_forged_token_row(sealed_store: tuple[Path, Path]) -> None:
    db, key_path = sealed_store
    found = (key_path.read_bytes(), "file")
    assert doctor.check_token(db, key_path, found).ok
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE token SET ciphertext = ? WHERE id = 1",
                     (b"\x00" * 40,))
    conn.close()
    check = doctor.check_token(db, key_path, found)
    assert not check.ok and check.detail == "the stored token fails authentication"
    other = doctor.check_token(db, key_path, (bytes(32), "file"))
    assert not other.ok and "another key" in other.detail
