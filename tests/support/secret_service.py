"""A real Secret Service for tests: gnome-keyring on a private D-Bus session bus.

``dbus-run-session`` starts a session bus that lives as long as its child; the
child unlocks gnome-keyring's login collection with a password on stdin (creating
it in a temporary HOME) and then waits. Hosts get the bus through
``DBUS_SESSION_BUS_ADDRESS``; the test talks to the same keyring with SecretStorage
to look, lock, unlock and delete. Installed by ``make keyring`` (Debian packages
gnome-keyring, libsecret-tools, dbus).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

PASSWORD = "test-keyring-password"
SERVICE = "flattr-companion"  # what flattr_host.storage.keys names its entries
TOOLS = ("dbus-run-session", "gnome-keyring-daemon")

# The address is published only after the unlock: a client asking earlier would
# start a daemon by D-Bus activation, one without the (password-made) login keyring.
_SCRIPT = (
    'printf %s "$2" | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; '
    'echo "$DBUS_SESSION_BUS_ADDRESS" > "$1.tmp" && mv "$1.tmp" "$1"; '
    "exec sleep 100000"
)


def missing() -> str | None:
    """Why a Secret Service cannot be started here, or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (run `make keyring`)"
    try:
        import secretstorage  # noqa: F401
    except ImportError:
        return "secretstorage is not installed"
    return None


class SecretServiceSession:
    """One private session bus with an unlocked gnome-keyring; :meth:`stop` ends both."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.home = folder / "keyring-home"
        self.address = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Any = None

    def start(self, timeout: float = 20.0) -> SecretServiceSession:
        self.home.mkdir(parents=True, exist_ok=True)
        address_file = self.folder / "bus-address"
        self._proc = subprocess.Popen(
            ["dbus-run-session", "--", "sh", "-c", _SCRIPT, "sh", str(address_file), PASSWORD],
            env=self._env(), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dbus-run-session did not start a session bus")
            time.sleep(0.01)
        self.address = address_file.read_text().strip()
        while True:
            try:
                if not self.collection().is_locked():
                    return self
            except Exception:
                self._drop_connection()
                if time.monotonic() > deadline:
                    self.stop()
                    raise
            time.sleep(0.02)

    def _env(self) -> dict[str, str]:
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "XDG_RUNTIME_DIR": str(self.home)}
        if self.address:
            env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env

    @property
    def env(self) -> dict[str, str]:
        """What a host needs to reach this keyring."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    def collection(self) -> Any:
        import secretstorage
        from jeepney.io.blocking import open_dbus_connection

        if self._conn is None:
            self._conn = open_dbus_connection(bus=self.address)
        return secretstorage.Collection(self._conn)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def items(self, home: Path) -> list[Any]:
        attributes = {"service": SERVICE, "account": os.path.realpath(home)}
        return list(self.collection().search_items(attributes))

    def lookup(self, home: Path) -> bytes | None:
        """The secret stored for data directory ``home`` (unlocks nothing)."""
        found = self.items(home)
        return bytes(found[0].get_secret()) if found else None

    def all_items(self) -> list[Any]:
        return list(self.collection().search_items({"service": SERVICE}))

    def delete(self, home: Path) -> None:
        for item in self.items(home):
            item.delete()

    def lock(self) -> None:
        self.collection().lock()
        assert self.collection().is_locked()

    def unlock(self) -> None:
        """Unlock without a prompt: a replacement daemon unlocks the login keyring."""
        subprocess.run(["gnome-keyring-daemon", "--replace", "--unlock", "--components=secrets"],
                       input=PASSWORD.encode(), env=self._env(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        deadline = time.monotonic() + 20
        while True:
            self._drop_connection()
            try:
                if not self.collection().is_locked():
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        self._drop_connection()
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
