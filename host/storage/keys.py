"""Where the token's key lives: the OS keyring when one is reachable, else a file.

The AES-GCM key that seals the token (docs/architecture.md, ``token_store``) is 32
random bytes. The ``key_backend`` setting (docs/configuration.md) picks its home:

- ``file``: ``token.key`` (mode 0600) in the data directory.
- ``keyring``: the OS keyring only (Secret Service on Linux, the login Keychain on
  macOS, Credential Manager on Windows); when it cannot be used there is no key:
  signing in fails and a stored token is given up (signed out).
- ``auto`` (default): the keyring when it is reachable and unlocked, else the file.

The key is looked up every time it is needed (sealing a token, sending a batch),
never before the first reply, so the host notices a keyring that was locked or an
entry that was deleted while it runs. What happens then follows from the token's
``key_id``: a key that does not match the stored token means the token is set
aside and the user is asked to sign in again (``TokenStore._discard``); it is
never kept or sent in clear. A file key moves into the keyring as soon as the
keyring can be used (the file is removed once the entry reads back equal), and
with ``key_backend=file`` a keyring key moves back into the file.

Every host process on one data directory (several profiles, several browsers)
uses the same entry: it is named by the data directory's real path, and creating
or moving a key happens inside the store's write lock (``BEGIN IMMEDIATE``), so
two processes never make two keys. Which backend holds the key, and why, is kept
in the store's ``kv`` table (``key_backend``, ``key_reason``) for the state,
``status`` and ``doctor``.

Nothing here prompts the user: a keyring that would need a prompt to unlock is
"locked", and a keyring's own prompt (to allow an item to be written) is bounded
by :data:`PROMPT_TIMEOUT_S`.
"""

from __future__ import annotations

import base64
import os
import time

from flattr_host.core.config import KEY_BACKENDS
from flattr_host.core.errors import FlattrHostError, StoreError
from flattr_host.storage.token_store import KEY_BYTES, KEYRING_BACKENDS, key_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from flattr_host.core.logs import Logger
    from flattr_host.storage.store import Store

    class Keyring(Protocol):
        """One OS keyring entry: the key of one data directory."""

        name: str

        def get(self) -> bytes | None:
            """The stored secret, None if there is no entry; KeyUnavailable if unusable."""

        def put(self, secret: bytes) -> None:
            """Create or replace the entry."""

        def delete(self) -> bool:
            """Remove the entry; True if there was one."""

        def close(self) -> None:
            """Release the connection (a new one is made on the next call)."""


MODES = KEY_BACKENDS
SERVICE = "flattr-companion"
LABEL = "Flattr companion: token key"
#: One D-Bus call to the Secret Service; a keyring that does not answer is unusable.
CALL_TIMEOUT_S = 5.0
#: A keyring's own prompt (e.g. "allow this application?"); nothing waits longer.
PROMPT_TIMEOUT_S = 60.0


class KeyUnavailable(FlattrHostError):
    """The keyring cannot be used now (absent, locked, denied, not answering)."""


def encode_secret(key: bytes) -> bytes:
    """What the keyring stores: base64 text (keyring tools show text)."""
    return base64.b64encode(key)


def decode_secret(secret: bytes) -> bytes | None:
    """The key in a keyring secret, or None if it is not a well-formed key."""
    try:
        key = base64.b64decode(secret, validate=True)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


# -- the file -------------------------------------------------------------------------

def read_file_key(path: str, log: Logger) -> bytes | None:
    """The key in ``path``, None if there is none.

    A file that is empty, of the wrong size or unreadable (permissions, a folder in
    its place) is moved aside to ``token.key.broken-<ms>`` (like a broken token) so
    a new key can be made at once; a token sealed with it is lost (signed out).
    """
    try:
        with open(path, "rb") as handle:
            key = handle.read(KEY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        problem = f"unreadable ({exc.strerror or exc})"
    else:
        if len(key) == KEY_BYTES:
            return key
        problem = f"{len(key)} bytes instead of {KEY_BYTES}" if len(key) <= KEY_BYTES \
            else f"longer than {KEY_BYTES} bytes"
    aside = f"{path}.broken-{int(time.time() * 1000)}"
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None  # another process set it aside first
    except OSError as exc:
        raise StoreError(f"{path}: key file is {problem} and cannot be moved aside "
                         f"({exc.strerror or exc})") from None
    log.error("token key file is unusable; moved aside", problem=problem, kept=aside)
    return None


def write_file_key(path: str, key: bytes) -> bool:
    """Create ``path`` holding ``key`` (0600) unless it exists; True if we created it.

    A complete file is written under a temporary name and then linked into place:
    ``link`` fails if another process won the race, and then theirs is used.
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def load_or_create_file_key(path: str, log: Logger) -> bytes:
    """Read the key file, creating it (safe across processes) if missing or broken."""
    for _ in range(3):
        key = read_file_key(path, log)
        if key is not None:
            return key
        write_file_key(path, os.urandom(KEY_BYTES))
    raise StoreError(f"{path}: cannot create a usable key file")


def _remove_file(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# -- the keyrings -----------------------------------------------------------------------

def entry_name(home: str) -> str:
    """The entry's account name: the data directory's real path (one key per directory)."""
    return os.path.realpath(home)


def default_keyring(home: str, bus_address: str | None = None) -> Keyring:
    """This platform's keyring (it connects only when first used). ``bus_address``:
    the session bus on Linux, if not this process's ``DBUS_SESSION_BUS_ADDRESS``."""
    import sys

    if sys.platform == "darwin":
        return MacKeychain(entry_name(home))
    if sys.platform == "win32":
        return WindowsCredentials(entry_name(home))
    return SecretService(entry_name(home), bus_address)


class _TimedConnection:
    """A jeepney connection whose calls and prompts give up after a while.

    SecretStorage waits for D-Bus replies without a limit; a keyring that hangs
    must not hang the host.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def send_and_get_reply(self, message: Any, *, timeout: float | None = None) -> Any:
        return self._conn.send_and_get_reply(
            message, timeout=CALL_TIMEOUT_S if timeout is None else timeout)

    def recv_until_filtered(self, queue: Any, *, timeout: float | None = None) -> Any:
        return self._conn.recv_until_filtered(
            queue, timeout=PROMPT_TIMEOUT_S if timeout is None else timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class SecretService:
    """The freedesktop.org Secret Service (GNOME Keyring, KWallet, KeePassXC) over
    D-Bus, with SecretStorage (docs/dependencies.md).

    Only the default collection is used, and only when it is unlocked: creating or
    unlocking a collection needs a prompt, which a browser-launched host must not
    raise (it would pop up behind the browser or hang a headless session).
    """

    name = "secret-service"

    def __init__(self, account: str, address: str | None = None) -> None:
        self._attributes = {"service": SERVICE, "account": account}
        self._address = address  # None: the process's DBUS_SESSION_BUS_ADDRESS
        self._conn: Any = None
        self._collection: Any = None

    def _open(self) -> Any:
        if self._collection is not None:
            return self._collection
        address = self._address or os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        if not address:
            raise KeyUnavailable("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
        if address.startswith("disabled:"):
            # What headless Chromium hands its children: no bus on purpose.
            raise KeyUnavailable("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is "
                                 "'disabled:', as headless Chromium sets it)")
        try:
            import secretstorage
            from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]
            from secretstorage.util import add_match_rules
        except ImportError:
            raise KeyUnavailable("the secretstorage package is not installed") from None
        try:
            try:
                raw = open_dbus_connection(bus=address)
            except (OSError, ValueError, RuntimeError) as exc:
                raise KeyUnavailable(f"the Secret Service cannot be reached: the session bus "
                                     f"did not accept a connection ({exc})") from None
            self._conn = _TimedConnection(raw)
            add_match_rules(self._conn)
            if not secretstorage.check_service_availability(self._conn):
                raise KeyUnavailable("no Secret Service on the session bus")
            try:
                self._collection = secretstorage.Collection(self._conn)
            except secretstorage.ItemNotFoundException:
                raise KeyUnavailable("the Secret Service has no default collection") from None
        except BaseException:
            self.close()
            raise
        return self._collection

    def _call(self, action: Callable[[Any], Any]) -> Any:
        """Run ``action(collection)``, turning every failure into KeyUnavailable.

        SecretStorage (and the ``cryptography`` it imports) is loaded by :meth:`_open`
        only once there is a bus to talk to: a host without one never loads it.
        """
        try:
            collection = self._open()
            if collection.is_locked():
                raise KeyUnavailable("the Secret Service's default collection is locked")
            return action(collection)
        except KeyUnavailable:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise KeyUnavailable(_secret_service_failure(exc)) from None

    def get(self) -> bytes | None:
        def action(collection: Any) -> bytes | None:
            for item in collection.search_items(self._attributes):
                return bytes(item.get_secret())
            return None

        result: bytes | None = self._call(action)
        return result

    def put(self, secret: bytes) -> None:
        self._call(lambda c: c.create_item(LABEL, self._attributes, secret, replace=True))

    def delete(self) -> bool:
        def action(collection: Any) -> bool:
            found = False
            for item in list(collection.search_items(self._attributes)):
                item.delete()
                found = True
            return found

        result: bool = self._call(action)
        return result

    def close(self) -> None:
        conn, self._conn, self._collection = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: S110 - a broken socket: nothing left to release
                pass


def _secret_service_failure(exc: Exception) -> str:
    """Why a Secret Service call failed, in words (SecretStorage's exceptions are
    known once :meth:`SecretService._open` has imported it)."""
    import sys

    secretstorage: Any = sys.modules.get("secretstorage")
    if secretstorage is not None:
        if isinstance(exc, secretstorage.LockedException):
            return "the Secret Service's default collection is locked"
        if isinstance(exc, secretstorage.PromptDismissedException):
            return "the Secret Service's prompt was dismissed"
        if isinstance(exc, secretstorage.SecretServiceNotAvailableException):
            return f"the Secret Service is not available ({exc})"
    if isinstance(exc, TimeoutError):
        return "the Secret Service did not answer in time"
    # DBusErrorResponse (e.g. org.freedesktop.DBus.Error.AccessDenied), a connection
    # that broke, a malformed reply: unusable now, retried later.
    return f"the Secret Service failed ({type(exc).__name__}: {str(exc)[:200]})"


# macOS Keychain Services result codes (SecBase.h)
ERR_SEC_ITEM_NOT_FOUND = -25300
ERR_SEC_INTERACTION_NOT_ALLOWED = -25308
ERR_SEC_AUTH_FAILED = -25293
ERR_SEC_NO_SUCH_KEYCHAIN = -25294
ERR_SEC_USER_CANCELED = -128
_MAC_REASONS = {
    ERR_SEC_INTERACTION_NOT_ALLOWED: "the login Keychain is locked",
    ERR_SEC_AUTH_FAILED: "the Keychain denied access",
    ERR_SEC_USER_CANCELED: "access to the Keychain was refused",
    ERR_SEC_NO_SUCH_KEYCHAIN: "there is no default Keychain",
}


class MacKeychain:
    """A generic password in the user's default Keychain, through Security.framework
    (ctypes: no dependency). Service ``flattr-companion``, account = the data
    directory. User interaction is switched off, so nothing ever prompts.
    """

    name = "macos-keychain"
    FRAMEWORK = "/System/Library/Frameworks/Security.framework/Security"

    def __init__(self, account: str, lib: Any = None) -> None:
        self._service = SERVICE.encode()
        self._account = account.encode()
        self._lib = lib
        self._quiet = False

    def _security(self) -> Any:
        if self._lib is None:
            import ctypes

            try:
                lib = ctypes.CDLL(self.FRAMEWORK)
            except OSError as exc:
                raise KeyUnavailable(f"Security.framework cannot be loaded ({exc})") from None
            u32, vp = ctypes.c_uint32, ctypes.c_void_p
            lib.SecKeychainFindGenericPassword.argtypes = [
                vp, u32, ctypes.c_char_p, u32, ctypes.c_char_p,
                ctypes.POINTER(u32), ctypes.POINTER(vp), ctypes.POINTER(vp)]
            lib.SecKeychainAddGenericPassword.argtypes = [
                vp, u32, ctypes.c_char_p, u32, ctypes.c_char_p, u32, ctypes.c_char_p,
                ctypes.POINTER(vp)]
            lib.SecKeychainItemModifyAttributesAndData.argtypes = [vp, vp, u32, ctypes.c_char_p]
            lib.SecKeychainItemDelete.argtypes = [vp]
            lib.SecKeychainItemFreeContent.argtypes = [vp, vp]
            lib.CFRelease.argtypes = [vp]
            lib.SecKeychainSetUserInteractionAllowed.argtypes = [ctypes.c_ubyte]
            for function in ("SecKeychainFindGenericPassword", "SecKeychainAddGenericPassword",
                             "SecKeychainItemModifyAttributesAndData", "SecKeychainItemDelete",
                             "SecKeychainItemFreeContent", "SecKeychainSetUserInteractionAllowed"):
                getattr(lib, function).restype = ctypes.c_int32
            self._lib = lib
        if not self._quiet:
            # No dialog ever (unlock the Keychain, allow access): a locked Keychain
            # answers errSecInteractionNotAllowed at once instead of waiting for a
            # click behind the browser. Process-wide, and the host never shows UI.
            self._lib.SecKeychainSetUserInteractionAllowed(0)
            self._quiet = True
        return self._lib

    def _check(self, status: int) -> None:
        if status != 0:
            reason = _MAC_REASONS.get(status, f"the Keychain answered OSStatus {status}")
            raise KeyUnavailable(reason)

    def _find(self, want_data: bool) -> tuple[Any, bytes | None]:
        """(item reference or None, secret or None)."""
        import ctypes

        lib = self._security()
        length = ctypes.c_uint32(0)
        data = ctypes.c_void_p()
        item = ctypes.c_void_p()
        status = lib.SecKeychainFindGenericPassword(
            None, len(self._service), self._service, len(self._account), self._account,
            ctypes.pointer(length) if want_data else None,
            ctypes.pointer(data) if want_data else None, ctypes.pointer(item))
        if status == ERR_SEC_ITEM_NOT_FOUND:
            return None, None
        self._check(status)
        secret = None
        if want_data:
            secret = ctypes.string_at(data.value or 0, length.value) if data.value else b""
            lib.SecKeychainItemFreeContent(None, data)
        return item, secret

    def get(self) -> bytes | None:
        item, secret = self._find(want_data=True)
        if item is not None and item.value:
            self._security().CFRelease(item)
        return secret

    def put(self, secret: bytes) -> None:
        lib = self._security()
        item, _ = self._find(want_data=False)
        if item is None:
            self._check(lib.SecKeychainAddGenericPassword(
                None, len(self._service), self._service, len(self._account), self._account,
                len(secret), secret, None))
            return
        try:
            self._check(lib.SecKeychainItemModifyAttributesAndData(item, None, len(secret),
                                                                   secret))
        finally:
            lib.CFRelease(item)

    def delete(self) -> bool:
        lib = self._security()
        item, _ = self._find(want_data=False)
        if item is None:
            return False
        try:
            self._check(lib.SecKeychainItemDelete(item))
        finally:
            lib.CFRelease(item)
        return True

    def close(self) -> None:
        """Nothing to release: each call stands alone."""


# Windows Credential Manager (wincred.h, winerror.h)
CRED_TYPE_GENERIC = 1
CRED_PERSIST_LOCAL_MACHINE = 2
ERROR_NOT_FOUND = 1168
ERROR_NO_SUCH_LOGON_SESSION = 1312
_WIN_REASONS = {
    ERROR_NO_SUCH_LOGON_SESSION: "there is no logon session with a credential store",
    5: "Credential Manager denied access",
}


_CREDENTIAL: Any = None


def _credential_type() -> Any:
    """wincred.h's CREDENTIALW (made once: ctypes compares pointer types by identity)."""
    global _CREDENTIAL
    if _CREDENTIAL is None:
        _CREDENTIAL = _make_credential_type()
    return _CREDENTIAL


def _make_credential_type() -> Any:
    import ctypes

    class FileTime(ctypes.Structure):
        _fields_ = [("low", ctypes.c_uint32), ("high", ctypes.c_uint32)]

    class Credential(ctypes.Structure):
        _fields_ = [
            ("Flags", ctypes.c_uint32), ("Type", ctypes.c_uint32),
            ("TargetName", ctypes.c_wchar_p), ("Comment", ctypes.c_wchar_p),
            ("LastWritten", FileTime), ("CredentialBlobSize", ctypes.c_uint32),
            ("CredentialBlob", ctypes.POINTER(ctypes.c_char)), ("Persist", ctypes.c_uint32),
            ("AttributeCount", ctypes.c_uint32), ("Attributes", ctypes.c_void_p),
            ("TargetAlias", ctypes.c_wchar_p), ("UserName", ctypes.c_wchar_p),
        ]

    return Credential


class WindowsCredentials:
    """A generic credential in the user's Credential Manager, through advapi32
    (ctypes: no dependency). Target ``flattr-companion:<data directory>``.
    """

    name = "windows-credentials"

    def __init__(self, account: str, lib: Any = None,
                 last_error: Callable[[], int] | None = None) -> None:
        self._target = f"{SERVICE}:{account}"
        self._lib = lib
        self._last_error = last_error
        self._cred: Any = None

    def _advapi(self) -> Any:
        import ctypes

        if self._cred is None:
            self._cred = _credential_type()
        if self._lib is None:
            loader = getattr(ctypes, "WinDLL", ctypes.CDLL)
            try:
                lib = loader("advapi32", use_last_error=True)
            except OSError as exc:
                raise KeyUnavailable(f"advapi32 cannot be loaded ({exc})") from None
            pointer = ctypes.POINTER(self._cred)
            lib.CredReadW.argtypes = [ctypes.c_wchar_p, ctypes.c_uint32, ctypes.c_uint32,
                                      ctypes.POINTER(pointer)]
            lib.CredWriteW.argtypes = [pointer, ctypes.c_uint32]
            lib.CredDeleteW.argtypes = [ctypes.c_wchar_p, ctypes.c_uint32, ctypes.c_uint32]
            lib.CredFree.argtypes = [ctypes.c_void_p]
            for function in ("CredReadW", "CredWriteW", "CredDeleteW"):
                getattr(lib, function).restype = ctypes.c_int
            self._lib = lib
            self._last_error = getattr(ctypes, "get_last_error", lambda: 0)
        return self._lib

    def _fail(self, doing: str) -> KeyUnavailable:
        assert self._last_error is not None
        code = self._last_error()
        return KeyUnavailable(_WIN_REASONS.get(code, f"Credential Manager failed to {doing} "
                                                     f"(error {code})"))

    def get(self) -> bytes | None:
        import ctypes

        lib = self._advapi()
        found = ctypes.POINTER(self._cred)()
        if not lib.CredReadW(self._target, CRED_TYPE_GENERIC, 0, ctypes.pointer(found)):
            assert self._last_error is not None
            if self._last_error() == ERROR_NOT_FOUND:
                return None
            raise self._fail("read the credential")
        try:
            cred = found.contents
            return ctypes.string_at(cred.CredentialBlob, cred.CredentialBlobSize)
        finally:
            lib.CredFree(found)

    def put(self, secret: bytes) -> None:
        import ctypes

        lib = self._advapi()
        blob = ctypes.create_string_buffer(secret, len(secret))
        cred = self._cred()
        cred.Type = CRED_TYPE_GENERIC
        cred.TargetName = self._target
        cred.Comment = LABEL
        cred.CredentialBlobSize = len(secret)
        cred.CredentialBlob = ctypes.cast(blob, ctypes.POINTER(ctypes.c_char))
        cred.Persist = CRED_PERSIST_LOCAL_MACHINE
        cred.UserName = SERVICE
        if not lib.CredWriteW(ctypes.pointer(cred), 0):
            raise self._fail("write the credential")

    def delete(self) -> bool:
        lib = self._advapi()
        if lib.CredDeleteW(self._target, CRED_TYPE_GENERIC, 0):
            return True
        assert self._last_error is not None
        if self._last_error() == ERROR_NOT_FOUND:
            return False
        raise self._fail("delete the credential")

    def close(self) -> None:
        """Nothing to release: each call stands alone."""


# -- choosing the key ---------------------------------------------------------------------

class Keys:
    """The key for one data directory, found (or made, or moved) at each use.

    ``keyring_factory`` builds the platform's keyring for a data directory (tests
    pass an in-memory one); it is only called in ``auto`` and ``keyring`` modes, and
    in ``file`` mode to move a keyring key back into the file.
    """

    def __init__(self, store: Store, key_path: str, mode: str, log: Logger,
                 keyring_factory: Callable[[str], Keyring] = default_keyring) -> None:
        if mode not in MODES:
            raise StoreError(f"key backend {mode!r} is not one of {', '.join(MODES)}")
        self._store = store
        self._path = key_path
        self._home = os.path.dirname(key_path)
        self._mode = mode
        self._log = log
        self._factory = keyring_factory
        self._ring: Keyring | None = None

    def keyring(self) -> Keyring:
        if self._ring is None:
            self._ring = self._factory(self._home)
        return self._ring

    def get(self) -> bytes:
        """The key to seal and open the token with; raises KeyUnavailable (``keyring``
        mode and no usable keyring) or StoreError (the file cannot be made)."""
        if self._mode == "file":
            return self._file_mode()
        ring = self.keyring()
        try:
            return self._from_keyring(ring)
        except KeyUnavailable as exc:
            if self._mode == "keyring":
                self._record(None, f"key_backend is keyring and {exc}")
                raise
            key = load_or_create_file_key(self._path, self._log)
            self._record("file", f"{exc}; using {os.path.basename(self._path)}")
            return key

    def _from_keyring(self, ring: Keyring) -> bytes:
        entry = ring.get()
        key = decode_secret(entry) if entry is not None else None
        token_key = self._token_key_id()
        if (key is not None and not os.path.lexists(self._path)
                and (token_key is None or token_key == key_id(key))):
            self._record(ring.name, f"{ring.name} reachable", same_backend_ok=True)
            return key  # the common case: nothing to create or move, no write lock
        with self._write_lock():  # serializes creating and moving across processes
            return self._settle(ring)

    def _settle(self, ring: Keyring) -> bytes:
        """Inside the store's write lock: decide which key is the key, and put it in
        the keyring. The stored token's key id decides between an entry and a file."""
        entry = ring.get()
        key = decode_secret(entry) if entry is not None else None
        if entry is not None and key is None:
            self._log.error("keyring entry does not hold a key; replacing it",
                            backend=ring.name)
        file_key = read_file_key(self._path, self._log)
        token_key = self._token_key_id()
        file_matches = file_key is not None and token_key == key_id(file_key)
        entry_matches = key is not None and token_key == key_id(key)
        if file_key is not None and (file_matches or key is None) and not entry_matches:
            ring.put(encode_secret(file_key))
            if ring.get() != encode_secret(file_key):
                raise KeyUnavailable(f"{ring.name} did not keep the key")
            _remove_file(self._path)
            self._log.info("token key moved into the keyring", backend=ring.name)
            self._record(ring.name, f"{ring.name} reachable; key moved from "
                                    f"{os.path.basename(self._path)}", locked=True)
            return file_key
        if key is None:
            key = os.urandom(KEY_BYTES)
            ring.put(encode_secret(key))
            stored = ring.get()
            if stored != encode_secret(key):
                raise KeyUnavailable(f"{ring.name} did not keep the key")
            self._log.info("token key created in the keyring", backend=ring.name)
        if file_key is not None or os.path.lexists(self._path):
            _remove_file(self._path)
            self._log.info("stale token key file removed; the keyring holds the key",
                           backend=ring.name)
        self._record(ring.name, f"{ring.name} reachable", locked=True)
        return key

    def _file_mode(self) -> bytes:
        if not os.path.lexists(self._path) and self._token_key_id() is not None:
            self._move_back()
        key = load_or_create_file_key(self._path, self._log)
        self._record("file", "key_backend is file")
        return key

    def _move_back(self) -> None:
        """``key_backend=file`` with no file but a token: take the key out of the
        keyring if it is the token's (otherwise the sign-in is lost)."""
        try:
            ring = self.keyring()
            with self._write_lock():
                entry = ring.get()
                key = decode_secret(entry) if entry is not None else None
                if key is None or key_id(key) != self._token_key_id():
                    return
                write_file_key(self._path, key)
                if read_file_key(self._path, self._log) == key:
                    ring.delete()
                    self._log.info("token key moved from the keyring into the file",
                                   backend=ring.name)
        except KeyUnavailable:
            return

    def _token_key_id(self) -> str | None:
        row = self._store.conn.execute("SELECT key_id FROM token WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def _record(self, backend: str | None, reason: str, locked: bool = False,
                same_backend_ok: bool = False) -> None:
        """Keep (backend, reason) in ``kv`` when it changed (``locked``: inside a write;
        ``same_backend_ok``: keep the recorded reason if the backend is the same, e.g.
        "key moved from token.key" stays until something else happens)."""
        value = backend or "none"
        rows = dict(self._store.conn.execute(
            "SELECT key, value FROM kv WHERE key IN ('key_backend', 'key_reason')").fetchall())
        if rows.get("key_backend") == value and (same_backend_ok
                                                  or rows.get("key_reason") == reason):
            return
        level = self._log.info if backend in KEYRING_BACKENDS or "is file" in reason \
            else self._log.warning
        level("token key backend", backend=value, reason=reason)

        def write(conn: Any) -> None:
            conn.executemany("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) "
                             "DO UPDATE SET value = excluded.value",
                             [("key_backend", value), ("key_reason", reason)])

        if locked:
            write(self._store.conn)
        else:
            with self._write_lock():
                write(self._store.conn)

    def _write_lock(self) -> Any:
        """The store's write transaction, or the caller's if one is open already."""
        if self._store.conn.in_transaction:
            import contextlib

            return contextlib.nullcontext()
        return self._store.write()

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()


def peek(key_path: str, mode: str,
         keyring_factory: Callable[[str], Keyring] = default_keyring
         ) -> tuple[bytes | None, str | None, str]:
    """(key, backend holding it, why) without creating, moving or writing anything
    (``doctor``). The keyring is asked in every mode but ``file``."""
    home = os.path.dirname(key_path)
    reason = "key_backend is file"
    if mode != "file":
        ring = keyring_factory(home)
        try:
            entry = ring.get()
        except KeyUnavailable as exc:
            reason = str(exc)
        else:
            key = decode_secret(entry) if entry is not None else None
            if key is not None:
                return key, ring.name, f"{ring.name} holds the key"
            reason = (f"{ring.name} holds no key for {entry_name(home)}" if entry is None
                      else f"the {ring.name} entry for {entry_name(home)} is not a key")
        finally:
            ring.close()
    if mode == "keyring":
        return None, None, reason
    try:
        with open(key_path, "rb") as handle:
            key = handle.read(KEY_BYTES + 1)
    except FileNotFoundError:
        return None, None, f"{reason}; no {os.path.basename(key_path)}"
    except OSError as exc:
        return None, "file", f"{key_path} is unreadable ({exc.strerror or exc})"
    if len(key) != KEY_BYTES:
        return None, "file", f"{key_path} holds {len(key)} bytes, not a key"
    return key, "file", reason


def remove_keyring_entry(home: str,
                         keyring_factory: Callable[[str], Keyring] = default_keyring
                         ) -> tuple[str, bool]:
    """Delete the data directory's keyring entry: (backend name, whether one was removed).
    Raises KeyUnavailable if the keyring cannot be reached."""
    ring = keyring_factory(home)
    try:
        return ring.name, ring.delete()
    finally:
        ring.close()


__all__ = ["KEYRING_BACKENDS", "MODES", "KeyUnavailable", "Keys", "peek",
           "remove_keyring_entry"]
