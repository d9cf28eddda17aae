"""The token at rest: encrypted, private, and a broken store means signed out."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flattr_host.core.logs import Logger
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import KEY_BYTES, TokenStore, load_or_create_key
from tests.support.loaded import loaded_after

TOKEN = "8843d7f92416211de9ebb963ff4ce28125932878"


def store_token(tokens: TokenStore, store: Store, token: str = TOKEN) -> None:
    with store.write() as conn:
        tokens.put(conn, tokens.seal(token))


def test_round_trip_and_presence(tokens: TokenStore, store: Store) -> None:
    assert tokens.present() is False and tokens.load() is None
    store_token(tokens, store)
    assert tokens.present() is True
    assert tokens.load() == TOKEN


def test_ciphertext_on_disk_does_not_contain_the_token(tokens: TokenStore, store: Store,
                                                       home: Path) -> None:
    store_token(tokens, store)
    store.conn.execute("PRAGMA wal_checkpoint(FULL)")
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data, path
            assert TOKEN.encode("utf-16-le") not in data, path


def test_key_file_is_private_and_32_bytes(tokens: TokenStore, store: Store, home: Path) -> None:
    store_token(tokens, store)
    key = home / "token.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == KEY_BYTES


def test_tampered_ciphertext_means_signed_out_and_is_kept_aside(
    tokens: TokenStore, store: Store, home: Path
) -> None:
    store_token(tokens, store)
    (ciphertext,) = store.conn.execute("SELECT ciphertext FROM token").fetchone()
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    store.conn.execute("UPDATE token SET ciphertext = ?", (flipped,))
    assert tokens.load() is None
    assert tokens.present() is False
    kept = list(home.glob("token.broken-*.json"))
    assert len(kept) == 1 and stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert "cannot be decrypted" in (home / "logs" / "host.log").read_text()


def test_replaced_key_means_signed_out(tokens: TokenStore, store: Store, home: Path,
                                       log: Logger) -> None:
    store_token(tokens, store)
    (home / "token.key").write_bytes(b"k" * KEY_BYTES)
    fresh = TokenStore(store, home / "token.key", log)
    assert fresh.present() is True  # cheap check: not decrypted yet
    assert fresh.load() is None
    assert fresh.present() is False
    assert list(home.glob("token.broken-*.json"))


def test_short_key_file_is_replaced(home: Path, log: Logger) -> None:
    (home / "token.key").write_bytes(b"short")
    key = load_or_create_key(home / "token.key", log)
    assert len(key) == KEY_BYTES
    assert list(home.glob("token.key.broken-*"))


def test_processes_racing_to_create_the_key_agree(home: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from flattr_host.core.logs import Logger; "
        "from flattr_host.storage.token_store import load_or_create_key; "
        f"print(load_or_create_key(Path({str(home / 'token.key')!r}), Logger(None)).hex())"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
             for _ in range(6)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1
    assert bytes.fromhex(keys.pop().decode()) == (home / "token.key").read_bytes()


def test_discarding_an_unusable_token_is_a_sign_out_through_the_state_machine(
    tokens: TokenStore, store: Store, home: Path, log: Logger
) -> None:
    from flattr_host.core.session import Auth, RateLimited, Subscription, TokenStored
    from flattr_host.storage.state import StateStore

    states = StateStore(store, tokens)
    states.apply(TokenStored(True), token=TOKEN)
    states.apply(RateLimited(4_000_000_000.0))
    assert states.read().rate_limited_until == 4_000_000_000.0
    (home / "token.key").write_bytes(b"k" * KEY_BYTES)  # the key was replaced
    fresh = TokenStore(store, home / "token.key", log)
    assert fresh.load() is None
    after = StateStore(store, fresh).read()
    assert after.auth is Auth.SIGNED_OUT
    assert after.rate_limited_until is None  # not left behind
    assert after.subscription is Subscription.ACTIVE
    assert store.conn.execute("SELECT COUNT(*) FROM token").fetchone()[0] == 0
    assert store.get("rate_limited_until") is None


def test_discard_spares_a_token_stored_meanwhile(tokens: TokenStore, store: Store,
                                                 home: Path, log: Logger) -> None:
    from flattr_host.core.session import Auth
    from flattr_host.storage.state import StateStore

    store_token(tokens, store)
    row = store.conn.execute("SELECT key_id, nonce, ciphertext FROM token").fetchone()
    store_token(tokens, store, "a-newer-token")  # another process signed in again
    tokens._discard(row, "test: the old row was unusable")
    assert tokens.load() == "a-newer-token"
    assert StateStore(store, tokens).read().auth is Auth.SIGNED_IN


def test_unseal_is_the_one_decryption_and_says_why(store: Store, tmp_path: Path) -> None:
    """The token store and ``doctor`` open a row with the same pure ``unseal``."""
    from flattr_host.storage.token_store import TokenUnreadable, unseal

    tokens = TokenStore(store, tmp_path / "token.key", Logger(None), key_backend="file")
    key_id, nonce, ciphertext = tokens.seal("tok-unseal")
    key = (tmp_path / "token.key").read_bytes()
    assert unseal(key, key_id, nonce, ciphertext) == "tok-unseal"
    with pytest.raises(TokenUnreadable) as wrong:
        unseal(bytes(32), key_id, nonce, ciphertext)
    assert wrong.value.wrong_key
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(TokenUnreadable) as broken:
        unseal(key, key_id, nonce, tampered)
    assert not broken.value.wrong_key and "InvalidTag" in str(broken.value)


def test_the_start_up_key_check_reads_the_key_file_and_decrypts_nothing(
        tokens: TokenStore, store: Store, home: Path, log: Logger) -> None:
    """check_key: the file's key is the row's, so the token counts as usable without
    opening it; a tampered ciphertext is only found when a batch is due (load)."""
    store_token(tokens, store)
    store.conn.execute("UPDATE token SET ciphertext = zeroblob(length(ciphertext))")
    fresh = TokenStore(store, home / "token.key", log)
    assert fresh.check_key() is True
    assert fresh._keys is None  # no key lookup: nothing moved, no keyring asked
    assert not list(home.glob("token.broken-*.json"))
    assert fresh.load() is None  # the real use finds it
    assert list(home.glob("token.broken-*.json"))


@pytest.mark.parametrize("damage", [b"", b"short", b"k" * KEY_BYTES, b"k" * (KEY_BYTES + 1)])
def test_the_start_up_key_check_signs_out_when_the_file_key_is_not_the_tokens(
        tokens: TokenStore, store: Store, home: Path, log: Logger, damage: bytes) -> None:
    store_token(tokens, store)
    (home / "token.key").write_bytes(damage)
    fresh = TokenStore(store, home / "token.key", log)
    assert fresh.check_key() is False
    assert store.conn.execute("SELECT COUNT(*) FROM token").fetchone()[0] == 0
    assert list(home.glob("token.broken-*.json"))
    assert "another key" in (home / "logs" / "host.log").read_text()
    assert tokens.check_key() is False  # nothing stored any more


def test_the_start_up_key_check_leaves_a_keyring_key_to_its_next_use(
        tokens: TokenStore, store: Store, home: Path, log: Logger,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking a keyring loads its library (and cryptography): a key recorded there is
    checked when the token is next needed, not at start-up."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)  # never this session's
    store.conn.execute("INSERT INTO token VALUES (1, 'k', x'00', x'00', 0)")
    store.conn.execute("INSERT INTO kv VALUES ('key_backend', 'secret-service')")
    fresh = TokenStore(store, home / "token.key", log, key_backend="auto")
    assert fresh.check_key() is True and fresh._keys is None
    file_only = TokenStore(store, home / "token.key", log, key_backend="file")
    assert file_only.check_key() is False  # file mode: the key must be in the file


def test_the_key_id_needs_no_openssl() -> None:
    """key_id hashes with the interpreter's built-in SHA-256: hashlib would map
    OpenSSL's libcrypto into every signed-in host (docs/performance.md)."""
    import hashlib

    from flattr_host.storage.token_store import key_id

    key = bytes(range(KEY_BYTES))
    assert key_id(key) == hashlib.sha256(b"key-id:" + key).hexdigest()[:16]
    code = "from flattr_host.storage.token_store import key_id; key_id(bytes(32))"
    assert loaded_after(code, ("hashlib", "_hashlib")) == []
