"""The access token at rest: AES-GCM ciphertext in the store, the key apart from it.

The key is 32 random bytes in the OS keyring or in ``token.key`` (mode 0600) beside
the database (:mod:`flattr_host.storage.keys`, setting ``key_backend``), so a copy of the
database alone reveals nothing. The row records which key encrypted it
(``key_id``, a hash prefix of the key). ``hello`` is answered from the row's presence
alone, without ``cryptography`` or ``hashlib``. Right after the first reply the
submitter checks the key (:meth:`TokenStore.check_key`: in the common case the key
file read and its id compared; never a decryption); the token is decrypted only
when a batch is due, so an idle host never loads ``cryptography``
(docs/performance.md, idle memory). A token that fails either is discarded and a
state event says signed out.

A token that cannot be decrypted (tampered row, replaced key) means signed out:
the host logs it, writes the broken row aside to ``token.broken-<time>.json`` and
erases it; it never crashes on it.
"""

from __future__ import annotations

import json
import os
import time

from flattr_host.core.errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

    from flattr_host.core.logs import Logger
    from flattr_host.core.session import Auth
    from flattr_host.storage.store import Store

KEY_BYTES = 32
NONCE_BYTES = 12
AAD = b"flattr-companion token v1"
#: Names of the OS keyrings that can hold the key (``kv.key_backend``; docs/protocol.md).
KEYRING_BACKENDS = ("secret-service", "macos-keychain", "windows-credentials")


def key_id(key: bytes) -> str:
    """The id a sealed row records for its key: a hash prefix, safe to store."""
    digest: str = _sha256()(b"key-id:" + key).hexdigest()
    return digest[:16]


def _sha256() -> Any:
    """SHA-256 from the interpreter's built-in module where there is one.

    ``hashlib`` loads ``_hashlib`` and maps OpenSSL's libcrypto (3.8 MiB of RSS,
    docs/performance.md) to hash 40 bytes; the built-in module is what ``hashlib``
    itself falls back to (``_sha2`` from Python 3.12, ``_sha256`` before).
    """
    import importlib

    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256
        except ImportError:
            continue
    import hashlib  # a build without the built-in hashes

    return hashlib.sha256


class TokenUnreadable(StoreError):
    """A stored token that does not open with the key given; ``wrong_key`` when the
    row names another key, else it fails authentication (tampered, or not a token)."""

    def __init__(self, message: str, wrong_key: bool) -> None:
        super().__init__(message)
        self.wrong_key = wrong_key


def read_sealed(conn: sqlite3.Connection) -> tuple[str, bytes, bytes] | None:
    """The stored token row on ``conn`` (a read-only connection will do):
    ``(key_id, nonce, ciphertext)``, or None when no token is stored."""
    row = conn.execute("SELECT key_id, nonce, ciphertext FROM token WHERE id = 1").fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]), bytes(row[2]))


#: Why a row does not open with the key at hand.
WRONG_KEY = "token was encrypted with another key"


def key_fits(key: bytes, row_key_id: str) -> bool:
    """Whether ``key`` is the key a row records (``row_key_id``): its length and id."""
    return len(key) == KEY_BYTES and key_id(key) == row_key_id


def unseal(key: bytes, row_key_id: str, nonce: bytes, ciphertext: bytes) -> str:
    """The token a row (``row_key_id``, ``nonce``, ``ciphertext``) seals with ``key``.

    Pure: nothing is read, written or set aside (``flattr-host doctor`` uses it as is);
    raises :class:`TokenUnreadable` saying why the token does not open.
    """
    if not key_fits(key, row_key_id):
        raise TokenUnreadable(WRONG_KEY, wrong_key=True)
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(bytes(nonce), bytes(ciphertext), AAD).decode("ascii")
    except (InvalidTag, ValueError, UnicodeDecodeError) as exc:
        raise TokenUnreadable(f"token cannot be decrypted ({type(exc).__name__})",
                              wrong_key=False) from None


def _file_key_id(path: str) -> str | None:
    """The id of the key in the key file at ``path``; None if it holds no key.
    Reads only: a broken file is set aside by the real lookup."""
    try:
        with open(path, "rb") as handle:
            key = handle.read(KEY_BYTES + 1)
    except OSError:
        return None
    return key_id(key) if len(key) == KEY_BYTES else None


def load_or_create_key(path: str | os.PathLike[str], log: Logger) -> bytes:
    """Read ``token.key``, creating it atomically (safe across processes) if missing.

    A key file that is empty, of the wrong size or unreadable is moved aside and
    replaced (:func:`flattr_host.storage.keys.read_file_key`): tokens sealed with it are
    lost (signed out), which is the documented outcome of a broken store.
    """
    from flattr_host.storage.keys import load_or_create_file_key

    return load_or_create_file_key(os.fspath(path), log)


class TokenStore:
    """Save, load and erase the one access token. Each call is its own transaction."""

    def __init__(self, store: Store, key_path: str | os.PathLike[str], log: Logger,
                 key_backend: str = "auto") -> None:
        self._store = store
        self._key_path = os.fspath(key_path)
        self._log = log
        self._key_backend = key_backend
        self._keys: Any = None  # flattr_host.storage.keys.Keys, made when a key is first needed

    def _get_key(self) -> bytes:
        """The key, looked up at every use (docs/architecture.md, the token's key)."""
        if self._keys is None:
            from flattr_host.storage.keys import Keys  # never on the hello path

            self._keys = Keys(self._store, self._key_path, self._key_backend, self._log)
        key: bytes = self._keys.get()
        return key

    def present(self) -> bool:
        """Whether the state machine counts this token as signed in (:meth:`auth`)."""
        from flattr_host.core.session import Auth

        return self.auth() is Auth.SIGNED_IN

    def auth(self) -> Auth:
        """Signed in or out, by :func:`flattr_host.core.session.auth_of_token` from the
        token row and its key's presence (no keyring is touched, nothing decrypted)."""
        from flattr_host.core.session import auth_of_token

        row = self._store.conn.execute(
            "SELECT (SELECT 1 FROM token WHERE id = 1), "
            "(SELECT value FROM kv WHERE key = 'key_backend')").fetchone()
        return auth_of_token(row[0] is not None, row[1] in KEYRING_BACKENDS,
                             row[0] is not None and os.path.exists(self._key_path))

    def location(self) -> dict[str, str | None]:
        """``{"backend", "reason"}``: where the key was last found and why, as recorded
        by :mod:`flattr_host.storage.keys` (``backend`` None: no key yet, or none usable)."""
        rows = dict(self._store.conn.execute(
            "SELECT key, value FROM kv WHERE key IN ('key_backend', 'key_reason')").fetchall())
        backend = rows.get("key_backend")
        return {"backend": None if backend in (None, "none") else str(backend),
                "reason": rows.get("key_reason")}

    def close(self) -> None:
        """Release the keyring connection, if one was opened."""
        if self._keys is not None:
            self._keys.close()

    def seal(self, token: str) -> tuple[str, bytes, bytes]:
        """Encrypt ``token``: (key_id, nonce, ciphertext), ready for :meth:`put`."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._get_key()
        nonce = os.urandom(NONCE_BYTES)
        self._log.add_secret(token)
        return key_id(key), nonce, AESGCM(key).encrypt(nonce, token.encode("ascii"), AAD)

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
        row = read_sealed(self._store.conn)
        if row is None:
            return None
        key = self._key_or_discard(row)
        if key is None:
            return None
        try:
            token = unseal(key, *row)
        except TokenUnreadable as exc:
            self._discard(row, str(exc))
            return None
        self._log.add_secret(token)
        return token, row[2]

    def check_key(self) -> bool:
        """Whether the stored token's key is at hand, told without decrypting: False
        (the token discarded, as :meth:`load_sealed` does) when it is not.

        The submitter's start-up check (docs/architecture.md#start-up). The
        common case costs one file read: ``token.key`` holds the key the row names
        (``key_backend`` file or auto). A key recorded in a keyring is left to the
        next real use: asking the keyring loads its library and with it
        ``cryptography`` (docs/performance.md, idle memory). Anything else (no key
        file, a broken one, another key) is looked up as a real use looks it up
        (:class:`~flattr_host.storage.keys.Keys`: moved, created or set aside) and
        compared with the row. Whether the ciphertext opens is known when a batch
        is due (:meth:`load_sealed`).
        """
        row = read_sealed(self._store.conn)
        if row is None:
            return False
        if self._key_backend != "keyring" and _file_key_id(self._key_path) == row[0]:
            return True
        recorded = self._store.conn.execute(
            "SELECT value FROM kv WHERE key = 'key_backend'").fetchone()
        if self._key_backend != "file" and recorded is not None \
                and recorded[0] in KEYRING_BACKENDS:
            return True
        key = self._key_or_discard(row)
        if key is None:
            return False
        if not key_fits(key, row[0]):
            self._discard(row, WRONG_KEY)
            return False
        return True

    def _key_or_discard(self, row: tuple[str, bytes, bytes]) -> bytes | None:
        """The key for ``row``; None (the token discarded) when it is unavailable."""
        from flattr_host.storage.keys import KeyUnavailable

        try:
            return self._get_key()
        except KeyUnavailable as exc:
            self._discard(row, f"the token's key is unavailable: {exc}")
            return None

    def _discard(self, row: tuple[str, bytes, bytes], reason: str) -> None:
        import base64

        folder = os.path.dirname(self._key_path)
        aside = os.path.join(folder, f"token.broken-{int(time.time() * 1000)}.json")
        row_key_id, nonce, ciphertext = row
        record = {
            "key_id": row_key_id,
            "nonce": base64.b64encode(bytes(nonce)).decode(),
            "ciphertext": base64.b64encode(bytes(ciphertext)).decode(),
        }
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        self._log.error("stored token is unusable; signed out", reason=reason, kept=aside)
        # A sign-out like any other: through the state machine, which erases the row
        # and the rate-limit pause together, unless a new token replaced it meanwhile.
        from flattr_host.core.errors import TransitionError
        from flattr_host.core.session import TokenUnusable
        from flattr_host.storage.state import StateStore

        try:
            StateStore(self._store, self).apply(TokenUnusable(), sent_with=bytes(ciphertext))
        except TransitionError as exc:  # signed out already (the key file went away)
            self._log.warning("unusable token left for the next look", reason=str(exc))
