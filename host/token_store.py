"""The access token at rest: AES-GCM ciphertext in the store, key in its own file.

The key is 32 random bytes in ``token.key`` (mode 0600) beside the database, so a
copy of the database alone reveals nothing. The row records which key encrypted it
(``key_id``, a hash prefix of the key). ``hello`` is answered from the row's presence
alone, without ``cryptography`` or ``hashlib``; the submitter decrypts the token
right after the first reply, and a token that fails then is discarded and a state
event says signed out.

A token that cannot be decrypted (tampered row, replaced key) means signed out:
the host logs it, writes the broken row aside to ``token.broken-<time>.json`` and
erases it; it never crashes on it.
"""

from __future__ import annotations

import json
import os
import time

from flattr_host.errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

    from flattr_host.logs import Logger
    from flattr_host.store import Store

KEY_BYTES = 32
NONCE_BYTES = 12
AAD = b"flattr-companion token v1"


def _key_id(key: bytes) -> str:
    import hashlib

    return hashlib.sha256(b"key-id:" + key).hexdigest()[:16]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return b""


def load_or_create_key(path: str | os.PathLike[str], log: Logger) -> bytes:
    """Read the key file, creating it atomically (safe across processes) if missing.

    A key file of the wrong size is moved aside and replaced: tokens encrypted with
    it are lost (signed out), which is the documented outcome of a broken store.
    """
    path = os.fspath(path)
    for _ in range(3):
        key = _read(path)
        if len(key) == KEY_BYTES:
            return key
        if key:
            aside = f"{path}.broken-{int(time.time())}"
            log.error("token key file has the wrong size; moved aside",
                      size=len(key), expected=KEY_BYTES, path=aside)
            os.replace(path, aside)
        # Write a complete file under a temporary name, then link it into place:
        # link() fails if another process won the race, and then we read theirs.
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    raise StoreError(f"{path}: cannot create a usable key file")


class TokenStore:
    """Save, load and erase the one access token. Each call is its own transaction."""

    def __init__(self, store: Store, key_path: str | os.PathLike[str], log: Logger) -> None:
        self._store = store
        self._key_path = os.fspath(key_path)
        self._log = log
        self._key: bytes | None = None

    def _get_key(self) -> bytes:
        if self._key is None:
            self._key = load_or_create_key(self._key_path, self._log)
        return self._key

    def present(self) -> bool:
        """True when a token row and a key file exist (cheap: nothing is decrypted).

        A row encrypted with another key counts as present until :meth:`load`
        finds out and discards it.
        """
        row = self._store.conn.execute("SELECT 1 FROM token WHERE id = 1").fetchone()
        return row is not None and os.path.exists(self._key_path)

    def seal(self, token: str) -> tuple[str, bytes, bytes]:
        """Encrypt ``token``: (key_id, nonce, ciphertext), ready for :meth:`put`."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._get_key()
        nonce = os.urandom(NONCE_BYTES)
        self._log.add_secret(token)
        return _key_id(key), nonce, AESGCM(key).encrypt(nonce, token.encode("ascii"), AAD)

    @staticmethod
    def put(conn: sqlite3.Connection, sealed: tuple[str, bytes, bytes]) -> None:
        """Write a sealed token on ``conn``, inside the caller's write transaction."""
        conn.execute(
            "INSERT INTO token (id, key_id, nonce, ciphertext, updated_at) "
            "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, "
            "nonce = excluded.nonce, ciphertext = excluded.ciphertext, "
            "updated_at = excluded.updated_at",
            (*sealed, time.time()),
        )

    @staticmethod
    def delete(conn: sqlite3.Connection) -> None:
        """Remove the token on ``conn``, inside the caller's write transaction."""
        conn.execute("DELETE FROM token WHERE id = 1")

    @staticmethod
    def current_ciphertext(conn: sqlite3.Connection) -> bytes | None:
        row = conn.execute("SELECT ciphertext FROM token WHERE id = 1").fetchone()
        return None if row is None else bytes(row[0])

    def load(self) -> str | None:
        """The token, or None when there is none or it cannot be decrypted."""
        sealed = self.load_sealed()
        return None if sealed is None else sealed[0]

    def load_sealed(self) -> tuple[str, bytes] | None:
        """(token, ciphertext) or None; the ciphertext identifies this token version."""
        row = self._store.conn.execute(
            "SELECT key_id, nonce, ciphertext FROM token WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        key_id, nonce, ciphertext = row
        key = self._get_key()
        if key_id != _key_id(key):
            self._discard(row, "token was encrypted with another key")
            return None
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            token = AESGCM(key).decrypt(bytes(nonce), bytes(ciphertext), AAD).decode("ascii")
        except (InvalidTag, ValueError, UnicodeDecodeError) as exc:
            self._discard(row, f"token cannot be decrypted ({type(exc).__name__})")
            return None
        self._log.add_secret(token)
        return token, bytes(ciphertext)

    def _discard(self, row: tuple[str, bytes, bytes], reason: str) -> None:
        import base64

        folder = os.path.dirname(self._key_path)
        aside = os.path.join(folder, f"token.broken-{int(time.time() * 1000)}.json")
        key_id, nonce, ciphertext = row
        record = {
            "key_id": key_id,
            "nonce": base64.b64encode(bytes(nonce)).decode(),
            "ciphertext": base64.b64encode(bytes(ciphertext)).decode(),
        }
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        self._log.error("stored token is unusable; signed out", reason=reason, kept=aside)
        # A sign-out like any other: through the state machine, which erases the row
        # and the rate-limit pause together, unless a new token replaced it meanwhile.
        from flattr_host.errors import TransitionError
        from flattr_host.state import StateStore, TokenUnusable

        try:
            StateStore(self._store, self).apply(TokenUnusable(), sent_with=bytes(ciphertext))
        except TransitionError as exc:  # signed out already (the key file went away)
            self._log.warning("unusable token left for the next look", reason=str(exc))
