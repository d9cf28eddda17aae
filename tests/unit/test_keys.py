"""Where the token's key lives (flattr_host.storage.keys): keyring or file, migration, fallback.

The keyring here is an in-memory stand-in with the same interface as the real
backends (the real Secret Service is exercised in tests/integration/test_keyring.py).
The macOS and Windows backends run against mocked platform APIs: fake
Security.framework and advapi32 functions with the C signatures the code calls,
since neither system can run here.
"""

from __future__ import annotations

import base64
import ctypes
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flattr_host.core.errors import ConfigError
from flattr_host.core.logs import Logger
from flattr_host.core.session import SignedOut, TokenStored
from flattr_host.storage import keys
from flattr_host.storage.keys import Keys, KeyUnavailable, MacKeychain, WindowsCredentials
from flattr_host.storage.state import StateStore
from flattr_host.storage.store import Store
from flattr_host.storage.token_store import KEY_BYTES, TokenStore, key_id
from tests.support.loaded import loaded_after

TOKEN = "8843d7f92416211de9ebb963ff4ce28125932878"


class FakeKeyring:
    """One entry per account, shared by every instance made from the same dict."""

    name = "secret-service"

    def __init__(self, entries: dict[str, bytes], account: str) -> None:
        self.entries = entries
        self.account = account
        self.unavailable: str | None = None
        self.drop_writes = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.unavailable:
            raise KeyUnavailable(self.unavailable)

    def get(self) -> bytes | None:
        self._check()
        return self.entries.get(self.account)

    def put(self, secret: bytes) -> None:
        self._check()
        if not self.drop_writes:
            self.entries[self.account] = secret

    def delete(self) -> bool:
        self._check()
        return self.entries.pop(self.account, None) is not None

    def close(self) -> None:
        pass


class World:
    """A data directory, its store, and an in-memory keyring its TokenStores use."""

    def __init__(self, home: Path, log: Logger, store: Store) -> None:
        self.home = home
        self.log = log
        self.store = store
        self.entries: dict[str, bytes] = {}
        self.ring = FakeKeyring(self.entries, keys.entry_name(str(home)))

    @property
    def key_file(self) -> Path:
        return self.home / "token.key"

    def tokens(self, mode: str = "auto", store: Store | None = None) -> TokenStore:
        made = TokenStore(store or self.store, self.key_file, self.log, mode)
        made._keys = Keys(store or self.store, str(self.key_file), mode, self.log,
                          keyring_factory=lambda _home: self.ring)
        return made

    def sign_in(self, tokens: TokenStore) -> None:
        StateStore(self.store, tokens).apply(TokenStored(True), token=TOKEN)

    def entry_key(self) -> bytes | None:
        secret = self.entries.get(self.ring.account)
        return None if secret is None else keys.decode_secret(secret)


@pytest.fixture
def world(home: Path, log: Logger, store: Store) -> World:
    return World(home, log, store)


def test_auto_with_a_keyring_keeps_no_key_file(world: World) -> None:
    tokens = world.tokens()
    world.sign_in(tokens)
    assert not world.key_file.exists()
    key = world.entry_key()
    assert key is not None and len(key) == KEY_BYTES
    assert tokens.load() == TOKEN
    assert tokens.present() is True  # the kv says the keyring holds it: no file needed
    assert tokens.location() == {"backend": "secret-service",
                                 "reason": "secret-service reachable"}


def test_a_file_key_moves_into_the_keyring_without_losing_the_sign_in(world: World) -> None:
    world.sign_in(world.tokens("file"))
    file_key = world.key_file.read_bytes()
    assert world.entries == {}
    tokens = world.tokens("auto")
    assert tokens.load() == TOKEN
    assert not world.key_file.exists()
    assert world.entry_key() == file_key
    assert "moved from token.key" in str(tokens.location()["reason"])


def test_the_file_stays_when_the_keyring_does_not_keep_the_key(world: World) -> None:
    world.sign_in(world.tokens("file"))
    world.ring.drop_writes = True
    tokens = world.tokens("auto")
    assert tokens.load() == TOKEN  # still signed in, with the file
    assert world.key_file.exists()
    assert tokens.location()["backend"] == "file"
    assert "did not keep the key" in str(tokens.location()["reason"])


def test_an_unreachable_keyring_falls_back_to_the_file(world: World) -> None:
    world.ring.unavailable = "the Secret Service's default collection is locked"
    tokens = world.tokens()
    world.sign_in(tokens)
    assert world.key_file.exists() and world.entries == {}
    assert tokens.load() == TOKEN
    assert tokens.location() == {
        "backend": "file",
        "reason": "the Secret Service's default collection is locked; using token.key"}


def test_a_keyring_locked_after_sign_in_means_sign_in_again(world: World) -> None:
    tokens = world.tokens()
    world.sign_in(tokens)
    world.ring.unavailable = "the Secret Service's default collection is locked"
    assert tokens.load() is None  # the file key made now does not open the token
    assert tokens.present() is False
    assert list(world.home.glob("token.broken-*.json"))
    world.sign_in(tokens)  # signing in again works at once, with the file
    assert tokens.load() == TOKEN and world.key_file.exists()
    world.ring.unavailable = None  # unlocked again: the file key moves in
    assert tokens.load() == TOKEN
    assert not world.key_file.exists() and world.entry_key() is not None


def test_an_entry_deleted_while_running_means_sign_in_again(world: World) -> None:
    tokens = world.tokens()
    world.sign_in(tokens)
    old = world.entry_key()
    world.entries.clear()
    assert tokens.load() is None
    assert tokens.present() is False
    assert world.entry_key() not in (None, old)  # a new key, in the keyring
    world.sign_in(tokens)
    assert tokens.load() == TOKEN


def test_keyring_mode_without_a_keyring_refuses_and_never_writes_a_file(world: World) -> None:
    world.ring.unavailable = "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    tokens = world.tokens("keyring")
    with pytest.raises(KeyUnavailable):
        world.sign_in(tokens)
    assert not world.key_file.exists()
    assert tokens.location()["backend"] is None
    assert "key_backend is keyring and no D-Bus" in str(tokens.location()["reason"])


def test_keyring_mode_losing_the_keyring_signs_out(world: World) -> None:
    tokens = world.tokens("keyring")
    world.sign_in(tokens)
    world.ring.unavailable = "the Secret Service's default collection is locked"
    assert tokens.load() is None
    assert list(world.home.glob("token.broken-*.json"))
    assert not world.key_file.exists()


def test_file_mode_takes_the_key_back_out_of_the_keyring(world: World) -> None:
    world.sign_in(world.tokens("auto"))
    ring_key = world.entry_key()
    tokens = world.tokens("file")
    assert tokens.load() == TOKEN
    assert world.key_file.read_bytes() == ring_key
    assert world.entries == {}
    assert tokens.location() == {"backend": "file", "reason": "key_backend is file"}


def test_file_mode_never_asks_the_keyring_when_the_file_is_there(world: World) -> None:
    world.sign_in(world.tokens("file"))
    tokens = world.tokens("file")
    assert tokens.load() == TOKEN
    assert world.ring.calls == 0


def test_a_broken_keyring_entry_is_replaced(world: World) -> None:
    world.entries[world.ring.account] = b"not base64 at all!"
    tokens = world.tokens()
    world.sign_in(tokens)
    assert tokens.load() == TOKEN and world.entry_key() is not None


def test_a_stale_key_file_is_removed_when_the_keyring_holds_the_tokens_key(
        world: World) -> None:
    tokens = world.tokens()
    world.sign_in(tokens)
    world.key_file.write_bytes(os.urandom(KEY_BYTES))  # e.g. a file-only host made one
    assert tokens.load() == TOKEN
    assert not world.key_file.exists()


def test_two_processes_share_one_keyring_key(world: World, home: Path, log: Logger) -> None:
    with Store(home / "host.db", log) as other:
        first, second = world.tokens(), world.tokens(store=other)
        world.sign_in(first)
        assert second.load() == TOKEN
        StateStore(other, second).apply(TokenStored(True), token=TOKEN + "x")
        assert first.load() == TOKEN + "x"
    assert len(world.entries) == 1


def test_sign_out_leaves_the_key(world: World) -> None:
    tokens = world.tokens()
    world.sign_in(tokens)
    StateStore(world.store, tokens).apply(SignedOut())
    assert world.entry_key() is not None and tokens.present() is False


# -- the key file: empty, short, long, unreadable ---------------------------------------

@pytest.mark.parametrize("content", [b"", b"short", os.urandom(KEY_BYTES + 1), None])
def test_a_broken_key_file_is_kept_aside_and_sign_in_works_at_once(
        world: World, content: bytes | None) -> None:
    if content is None:
        world.key_file.mkdir()  # unreadable: a folder where the file should be
    else:
        world.key_file.write_bytes(content)
    tokens = world.tokens("file")
    world.sign_in(tokens)
    assert tokens.load() == TOKEN
    assert len(world.key_file.read_bytes()) == KEY_BYTES
    kept = list(world.home.glob("token.key.broken-*"))
    assert len(kept) == 1
    assert "token key file is unusable" in (world.home / "logs" / "host.log").read_text()


def test_an_empty_key_file_under_a_stored_token_signs_out_then_in(world: World) -> None:
    tokens = world.tokens("file")
    world.sign_in(tokens)
    world.key_file.write_bytes(b"")
    assert tokens.load() is None  # the old token's key is gone: signed out, set aside
    assert list(world.home.glob("token.broken-*.json"))
    world.sign_in(tokens)
    assert tokens.load() == TOKEN


def test_a_key_file_that_cannot_be_moved_aside_is_a_clear_error(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.key_file.write_bytes(b"")

    def refuse(*_args: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(keys.os, "replace", refuse)
    with pytest.raises(keys.StoreError, match="0 bytes instead of 32 and cannot be moved"):
        keys.load_or_create_file_key(str(world.key_file), world.log)


# -- reachability without a session bus; configuration ------------------------------------

def test_no_session_bus_is_unavailable_without_loading_secretstorage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    ring = keys.SecretService("/some/home")
    with pytest.raises(KeyUnavailable, match="DBUS_SESSION_BUS_ADDRESS is not set"):
        ring.get()
    # In a fresh process: SecretStorage imports cryptography (13 MiB), and a key
    # looked up in auto mode asks the keyring first (docs/performance.md).
    code = ("from flattr_host.storage import keys\n"
            "for address in (None, 'disabled:'):\n"
            "    try:\n"
            "        keys.SecretService('/some/home', address).get()\n"
            "    except keys.KeyUnavailable:\n"
            "        pass\n")
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    assert loaded_after(code, ("secretstorage", "jeepney", "cryptography"), env) == []


def test_a_bus_that_does_not_answer_is_unavailable(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    path = tmp_path / "bus"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={path}")
    try:
        with pytest.raises(KeyUnavailable, match="Secret Service"):
            keys.SecretService("/some/home").get()
    finally:
        server.close()


def test_key_backend_setting(tmp_path: Path) -> None:
    from flattr_host.core import config

    home = str(tmp_path)
    assert config.load({"FLATTR_HOST_HOME": home}).key_backend == "auto"
    assert config.load({"FLATTR_HOST_HOME": home,
                        "FLATTR_KEY_BACKEND": "keyring"}).key_backend == "keyring"
    with pytest.raises(ConfigError, match="key_backend 'vault' is not one of auto, keyring"):
        config.load({"FLATTR_HOST_HOME": home, "FLATTR_KEY_BACKEND": "vault"})


def test_the_hello_path_loads_no_keyring_code(home: Path) -> None:
    """A signed-in host answers hello and get-state without the key module, SecretStorage
    or jeepney (docs/performance.md: the key is needed only to seal or send)."""
    code = (
        "import sys\n"  # noqa: S608 - test code, not SQL built from input
        "from flattr_host.core import config\n"
        "from flattr_host.protocol import messages\n"
        "from flattr_host.runtime import service\n"
        "from flattr_host.core.logs import Logger\n"
        "from flattr_host.storage.store import Store\n"
        f"cfg = config.load({{'FLATTR_HOST_HOME': {str(home)!r}}})\n"
        "log = Logger(None)\n"
        "store = Store(cfg.db_path, log)\n"
        "store.conn.execute(\"INSERT INTO token VALUES (1, 'k', x'00', x'00', 0)\")\n"
        "store.conn.execute(\"INSERT INTO kv VALUES ('key_backend', 'secret-service')\")\n"
        "svc = service.Service(cfg, log, store, lambda state: None)\n"
        "hello = messages.parse_request({'id': 1, 'type': 'hello', 'extension':"
        " {'id': 'x', 'version': '1', 'build': 't'}})\n"
        "state = svc.handle(hello)['state']\n"
        "svc.handle(messages.parse_request({'id': 2, 'type': 'get-state'}))\n"
        "print(state['authenticated'], state['key']['backend'],"
        " sorted(m for m in ('flattr_host.storage.keys', 'secretstorage', 'jeepney',"
        " 'cryptography')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"})
    assert out.stdout.strip() == "True secret-service []"


# -- macOS Keychain: Security.framework mocked ---------------------------------------------

class FakeSecurity:
    """The Keychain Services calls MacKeychain makes, over a dict (C semantics)."""

    def __init__(self) -> None:
        self.items: dict[tuple[bytes, bytes], bytes] = {}
        self.handles: dict[int, tuple[bytes, bytes]] = {}
        self.buffers: list[Any] = []
        self.status: int | None = None  # force an OSStatus (locked, denied)
        self.released = 0
        self.freed = 0
        self.interaction: list[int] = []

    def SecKeychainFindGenericPassword(self, keychain: Any, slen: int, service: bytes,
                                       alen: int, account: bytes, length: Any, data: Any,
                                       item: Any) -> int:
        assert keychain is None and slen == len(service) and alen == len(account)
        if self.status is not None:
            return self.status
        name = (service, account)
        if name not in self.items:
            return keys.ERR_SEC_ITEM_NOT_FOUND
        if data is not None:
            buffer = ctypes.create_string_buffer(self.items[name], len(self.items[name]))
            self.buffers.append(buffer)
            length[0] = len(self.items[name])
            data[0] = ctypes.addressof(buffer)
        handle = 1000 + len(self.handles)
        self.handles[handle] = name
        item[0] = handle
        return 0

    def SecKeychainAddGenericPassword(self, keychain: Any, slen: int, service: bytes,
                                      alen: int, account: bytes, plen: int, password: bytes,
                                      item: Any) -> int:
        if self.status is not None:
            return self.status
        if (service, account) in self.items:
            return -25299  # errSecDuplicateItem
        self.items[(service, account)] = password[:plen]
        return 0

    def SecKeychainItemModifyAttributesAndData(self, item: Any, attrs: Any, plen: int,
                                               password: bytes) -> int:
        self.items[self.handles[item.value]] = password[:plen]
        return 0

    def SecKeychainItemDelete(self, item: Any) -> int:
        del self.items[self.handles[item.value]]
        return 0

    def SecKeychainItemFreeContent(self, attrs: Any, data: Any) -> int:
        self.freed += 1
        return 0

    def CFRelease(self, item: Any) -> None:
        self.released += 1

    def SecKeychainSetUserInteractionAllowed(self, allowed: int) -> int:
        self.interaction.append(allowed)
        return 0


def test_macos_keychain_stores_reads_replaces_and_deletes() -> None:
    security = FakeSecurity()
    ring = MacKeychain("/Users/a/Library/Application Support/flattr-companion", lib=security)
    assert ring.get() is None
    ring.put(b"first")
    assert ring.get() == b"first"
    ring.put(b"second")  # an existing item is modified, not duplicated
    assert ring.get() == b"second" and len(security.items) == 1
    assert ring.delete() is True and ring.get() is None and ring.delete() is False
    assert security.freed == 2 and security.released >= 3
    assert security.interaction == [0]  # no dialog, ever; switched off once
    (service, account), = [(b"flattr-companion",
                            b"/Users/a/Library/Application Support/flattr-companion")]
    assert service == keys.SERVICE.encode() and account.startswith(b"/Users/a")


@pytest.mark.parametrize(("status", "reason"), [
    (keys.ERR_SEC_INTERACTION_NOT_ALLOWED, "locked"),
    (keys.ERR_SEC_AUTH_FAILED, "denied"),
    (-99999, "OSStatus -99999"),
])
def test_macos_keychain_errors_are_unavailable(status: int, reason: str) -> None:
    security = FakeSecurity()
    security.status = status
    with pytest.raises(KeyUnavailable, match=reason):
        MacKeychain("/h", lib=security).get()


def test_macos_keychain_through_keys(home: Path, log: Logger, store: Store) -> None:
    security = FakeSecurity()
    tokens = TokenStore(store, home / "token.key", log)
    tokens._keys = Keys(store, str(home / "token.key"), "auto", log,
                        keyring_factory=lambda h: MacKeychain(keys.entry_name(h), lib=security))
    StateStore(store, tokens).apply(TokenStored(True), token=TOKEN)
    assert tokens.load() == TOKEN and not (home / "token.key").exists()
    assert tokens.location()["backend"] == "macos-keychain"


# -- Windows Credential Manager: advapi32 mocked --------------------------------------------

class FakeAdvapi:
    """CredReadW / CredWriteW / CredDeleteW / CredFree over a dict, with GetLastError."""

    def __init__(self) -> None:
        self.creds: dict[str, tuple[bytes, int, str]] = {}
        self.error = 0
        self.fail_with: int | None = None
        self.kept: list[Any] = []
        self.freed = 0
        self.credential = keys._credential_type()

    def last_error(self) -> int:
        return self.error

    def CredReadW(self, target: str, kind: int, flags: int, out: Any) -> int:
        assert kind == keys.CRED_TYPE_GENERIC and flags == 0
        if self.fail_with is not None:
            self.error = self.fail_with
            return 0
        if target not in self.creds:
            self.error = keys.ERROR_NOT_FOUND
            return 0
        blob, _persist, _user = self.creds[target]
        data = ctypes.create_string_buffer(blob, len(blob))
        cred = self.credential(CredentialBlobSize=len(blob), TargetName=target)
        cred.CredentialBlob = ctypes.cast(data, ctypes.POINTER(ctypes.c_char))
        self.kept += [data, cred]
        out[0] = ctypes.pointer(cred)
        return 1

    def CredWriteW(self, cred_ptr: Any, flags: int) -> int:
        if self.fail_with is not None:
            self.error = self.fail_with
            return 0
        cred = cred_ptr.contents
        assert cred.Type == keys.CRED_TYPE_GENERIC
        self.creds[cred.TargetName] = (ctypes.string_at(cred.CredentialBlob,
                                                        cred.CredentialBlobSize),
                                       cred.Persist, cred.UserName)
        return 1

    def CredDeleteW(self, target: str, kind: int, flags: int) -> int:
        if target not in self.creds:
            self.error = keys.ERROR_NOT_FOUND
            return 0
        del self.creds[target]
        return 1

    def CredFree(self, pointer: Any) -> None:
        self.freed += 1


def test_windows_credentials_store_read_replace_delete() -> None:
    api = FakeAdvapi()
    ring = WindowsCredentials(r"C:\Users\a\AppData\Local\flattr-companion", lib=api,
                              last_error=api.last_error)
    assert ring.get() is None
    ring.put(b"secret-1")
    assert ring.get() == b"secret-1"
    ring.put(b"secret-2")
    assert ring.get() == b"secret-2" and len(api.creds) == 1
    target = r"flattr-companion:C:\Users\a\AppData\Local\flattr-companion"
    assert api.creds[target][1:] == (keys.CRED_PERSIST_LOCAL_MACHINE, "flattr-companion")
    assert ring.delete() is True and ring.get() is None and ring.delete() is False
    assert api.freed == 2


def test_windows_credentials_errors_are_unavailable() -> None:
    api = FakeAdvapi()
    api.fail_with = keys.ERROR_NO_SUCH_LOGON_SESSION
    ring = WindowsCredentials("h", lib=api, last_error=api.last_error)
    with pytest.raises(KeyUnavailable, match="no logon session"):
        ring.get()
    with pytest.raises(KeyUnavailable, match="no logon session"):
        ring.put(b"x")


def test_windows_credentials_through_keys(home: Path, log: Logger, store: Store) -> None:
    api = FakeAdvapi()
    tokens = TokenStore(store, home / "token.key", log)
    tokens._keys = Keys(store, str(home / "token.key"), "auto", log, keyring_factory=lambda h:
                        WindowsCredentials(keys.entry_name(h), lib=api,
                                           last_error=api.last_error))
    StateStore(store, tokens).apply(TokenStored(True), token=TOKEN)
    assert tokens.load() == TOKEN and not (home / "token.key").exists()
    (blob, _, _), = api.creds.values()
    assert keys.decode_secret(blob) is not None
    assert key_id(base64.b64decode(blob)) == store.conn.execute(
        "SELECT key_id FROM token").fetchone()[0]


def test_remove_keyring_entry(world: World) -> None:
    world.sign_in(world.tokens())
    assert keys.remove_keyring_entry(str(world.home), lambda _h: world.ring) == (
        "secret-service", True)
    assert keys.remove_keyring_entry(str(world.home), lambda _h: world.ring) == (
        "secret-service", False)


# -- doctor and status ---------------------------------------------------------------------

def test_doctor_key_check_names_backend_and_reason(world: World) -> None:
    from flattr_host.tools import doctor

    db, key_path = world.home / "host.db", world.key_file
    check, found = doctor.check_key(db, key_path, "auto", lambda _h: world.ring)
    assert check.ok and "none yet" in check.detail and found == (None, None)
    world.sign_in(world.tokens())
    check, found = doctor.check_key(db, key_path, "auto", lambda _h: world.ring)
    assert check.ok and check.detail.startswith("secret-service (key_backend auto")
    assert doctor.check_token(db, key_path, found).ok
    world.ring.unavailable = "the Secret Service's default collection is locked"
    check, found = doctor.check_key(db, key_path, "auto", lambda _h: world.ring)
    assert not check.ok and "keeps the key in secret-service, but" in check.detail
    assert "unlock the keyring" in check.fix
    assert not doctor.check_token(db, key_path, found).ok


def test_doctor_key_check_with_the_file(world: World) -> None:
    from flattr_host.tools import doctor

    world.sign_in(world.tokens("file"))
    db, key_path = world.home / "host.db", world.key_file
    check, found = doctor.check_key(db, key_path, "file", lambda _h: world.ring)
    assert check.ok and check.detail.startswith("file (key_backend file")
    assert doctor.check_token(db, key_path, found).ok
    key_path.write_bytes(b"")
    check, _ = doctor.check_key(db, key_path, "file", lambda _h: world.ring)
    assert not check.ok and "holds 0 bytes, not a key" in check.detail
    assert world.ring.calls == 0


def test_status_shows_the_key_backend(home: Path) -> None:
    env = {**os.environ, "FLATTR_HOST_HOME": str(home), "FLATTR_KEY_BACKEND": "file"}
    code = ("from flattr_host.core import config; from flattr_host.core.logs import Logger; "
            "from flattr_host.storage.store import Store; "
            "from flattr_host.storage.token_store import "
            "TokenStore; from flattr_host.storage.state import StateStore; "
            "from flattr_host.core.session import TokenStored; "
            "c = config.load(); s = Store(c.db_path, Logger(None)); "
            "StateStore(s, TokenStore(s, c.key_path, Logger(None), 'file'))"
            ".apply(TokenStored(True), token='t0k3n')")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    out = subprocess.run([sys.executable, "-m", "flattr_host", "status"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "token key        file (key_backend is file)" in out


def test_uninstall_purge_without_a_reachable_keyring(tmp_path: Path) -> None:
    """No session bus: a host that kept its key in the file leaves nothing to purge
    (exit 0, said so); one that recorded the keyring gets a clear error (exit 1)."""
    home = tmp_path / "data"
    env = {**os.environ, "FLATTR_HOST_HOME": str(home)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    command = [sys.executable, "-m", "flattr_host", "uninstall", "--purge", "--browser",
               "chromium", "--user-data-dir", str(tmp_path / "profile")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "the keyring cannot be reached" in done.stdout
    home.mkdir()
    log = Logger(None)
    with Store(home / "host.db", log) as store:
        store.conn.execute("INSERT INTO kv VALUES ('key_backend', 'secret-service')")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot remove the token key from the keyring: no D-Bus session bus" in done.stderr


def test_a_disabled_bus_is_named_as_such() -> None:
    """Headless Chromium starts hosts with DBUS_SESSION_BUS_ADDRESS=disabled:."""
    with pytest.raises(KeyUnavailable, match="'disabled:', as headless Chromium sets it"):
        keys.SecretService("/some/home", "disabled:").get()


@pytest.mark.parametrize("address", ["garbage", "unix:path=/nonexistent/bus",
                                     "unix:abstract=flattr-test-nobody-listens"])
def test_a_bad_bus_address_is_unavailable(address: str) -> None:
    with pytest.raises(KeyUnavailable, match="Secret Service"):
        keys.SecretService("/some/home", address).get()


def test_a_secret_service_that_never_answers_does_not_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real session bus on which something owns org.freedesktop.secrets and never
    replies: the call gives up after CALL_TIMEOUT_S (shortened here)."""
    import shutil

    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (run `make keyring`)")
    from jeepney import DBus
    from jeepney.io.blocking import open_dbus_connection

    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        squatter = open_dbus_connection(bus=address)
        squatter.send_and_get_reply(DBus().RequestName("org.freedesktop.secrets"))
        monkeypatch.setattr(keys, "CALL_TIMEOUT_S", 0.5)
        with pytest.raises(KeyUnavailable, match="did not answer in time"):
            keys.SecretService("/some/home", address).get()
        squatter.close()
    finally:
        daemon.kill()
        daemon.wait(10)
