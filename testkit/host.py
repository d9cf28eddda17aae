"""The host as tests see it: installed with its own CLI, spawned as a browser spawns it.

A browser runs the manifest's launcher with the extension origin as argv[1] and the
launcher's folder as the working directory; :func:`install_launcher` writes the
real launcher with the real installer, and :class:`HostProcess` spawns it and
speaks frames to it. :class:`Host` is one test's host: its data folder, the
environment the browser passes on to it, its CLI and its log.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flattr_testing.errors import FlattrTestingError

CHROMIUM_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
GECKO_ID = "companion@flattr-companion.example"
MANIFEST_NAME = "com.flattr.companion.json"
ORIGIN = f"chrome-extension://{CHROMIUM_ID}/"
HEADER = struct.Struct("=I")


def install_launcher(profile_dir: Path, home: Path) -> Path:
    """Run the real ``flattr-host install`` into ``profile_dir``; return the launcher path."""
    env = {**os.environ, "FLATTR_HOST_HOME": str(home)}
    subprocess.run(
        [sys.executable, "-m", "flattr_host", "install", "--browser", "chromium",
         "--user-data-dir", str(profile_dir)],
        check=True, env=env, capture_output=True,
    )
    manifest = json.loads((profile_dir / "NativeMessagingHosts" / "com.flattr.companion.json")
                          .read_text())
    return Path(manifest["path"])


def frame(message: dict[str, Any] | bytes) -> bytes:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return HEADER.pack(len(data)) + data


class HostProcess:
    """A running host; read replies and events with :meth:`recv`."""

    def __init__(self, launcher: Path, home: Path, args: list[str] | None = None,
                 env: dict[str, str] | None = None, stderr: Path | None = None) -> None:
        """``stderr``: a file for the host's stderr instead of a pipe (a pipe nobody
        reads blocks a host that writes much there, e.g. PYTHONPROFILEIMPORTTIME)."""
        full_env = {**os.environ, "FLATTR_HOST_HOME": str(home), **(env or {})}
        err: Any = subprocess.PIPE if stderr is None else stderr.open("wb")
        try:
            self.proc = subprocess.Popen(
                [str(launcher), *(args if args is not None else [ORIGIN])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                cwd=str(launcher.parent), env=full_env,
            )
        finally:
            if stderr is not None:
                err.close()  # the child has its own copy
        self.stderr_path = stderr
        self._buffer = b""
        self._next_id = 1
        self.events: list[dict[str, Any]] = []
        #: len(events) when the last request was sent: events from there on may be
        #: caused by it (or be late ones from before: wait for specific states)
        self.mark = 0

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any] | bytes) -> None:
        self.send_raw(frame(message))

    def _read_some(self, deadline: float) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            raise EOFError("host closed stdout")
        self._buffer += chunk
        return True

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame from the host (reply or event)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= 4:
                (size,) = HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= 4 + size:
                    data = self._buffer[4 : 4 + size]
                    self._buffer = self._buffer[4 + size :]
                    value: dict[str, Any] = json.loads(data)
                    return value
            if not self._read_some(deadline):
                raise TimeoutError(f"no frame from the host within {timeout} s")

    def request(self, type_: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply; events seen meanwhile go to ``events``."""
        request_id = self._next_id
        self._next_id += 1
        self.mark = len(self.events)
        self.send({"id": request_id, "type": type_, **fields})
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if "event" in message:
                self.events.append(message)
                continue
            assert message.get("id") == request_id, message
            return message

    def wait_event(self, predicate: Any, timeout: float = 10.0,
                   since: int | None = None) -> dict[str, Any]:
        """The first state event whose state satisfies ``predicate``, among the events
        that arrived since the last request was sent (or since index ``since``) and
        those still coming.
        """
        start = self.mark if since is None else since
        for event in self.events[start:]:
            if predicate(event["state"]):
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if "event" in message:
                self.events.append(message)
                if predicate(message["state"]):
                    return message

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stderr_text(self) -> str:
        """The host's stderr: all of it (a pipe: once the host has exited), or what
        the file holds so far."""
        if self.stderr_path is not None:
            return self.stderr_path.read_text(errors="replace")
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def running_host(launcher: Path, home: Path, **kwargs: Any) -> Iterator[HostProcess]:
    host = HostProcess(launcher, home, **kwargs)
    try:
        yield host
    finally:
        host.kill()


class HostSetupError(FlattrTestingError):
    """The host's CLI failed or wrote something other than expected."""


def host_env(base: Path, home: Path, api: str, ca: str,
             extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a browser, inherited by the host it starts: HOME under ``base``,
    the host's data in ``home``, the fake API at ``api`` trusted through ``ca``, debug
    logging (every frame logged, so redaction is exercised too) and retry timings
    near zero (injected, never slept)."""
    return {
        **os.environ,
        "HOME": str(base / "home"),
        "FLATTR_HOST_HOME": str(home),
        "FLATTR_API_BASE": api,
        "FLATTR_CA_BUNDLE": ca,
        "FLATTR_LOG_LEVEL": "debug",
        "FLATTR_RETRY_BASE_S": "0.05",
        "FLATTR_RETRY_CAP_S": "0.2",
        "FLATTR_SUBMIT_DELAY_S": "0.05",
        "FLATTR_LEASE_S": "5",
        **(extra or {}),
    }


@dataclass
class Host:
    """One test's host: its data folder ``home``, the environment ``env`` browsers
    hand to it, the extension ids it admits, and its CLI."""

    home: Path
    env: dict[str, str]
    chromium_ids: tuple[str, ...] = (CHROMIUM_ID,)
    gecko_ids: tuple[str, ...] = (GECKO_ID,)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m flattr_host ARGS`` with this host's environment."""
        return subprocess.run(
            [sys.executable, "-m", "flattr_host", *args],
            env=self.env, capture_output=True, text=True, timeout=30, check=False,
        )

    def allow(self, chromium_id: str | None = None, gecko_id: str | None = None) -> None:
        """Admit one more extension: in the manifests written from now on and in the
        host's own caller check (``FLATTR_ALLOWED_EXTENSIONS``)."""
        if chromium_id and chromium_id not in self.chromium_ids:
            self.chromium_ids = (*self.chromium_ids, chromium_id)
        if gecko_id and gecko_id not in self.gecko_ids:
            self.gecko_ids = (*self.gecko_ids, gecko_id)
        self.env["FLATTR_ALLOWED_EXTENSIONS"] = ",".join((*self.chromium_ids, *self.gecko_ids))

    def _install(self, args: Iterable[str], ids: Iterable[str]) -> None:
        id_args = [part for one in ids for part in ("--extension-id", one)]
        done = self.cli("install", *args, *id_args)
        if done.returncode != 0:
            raise HostSetupError(f"flattr-host install {' '.join(args)} failed "
                                 f"(exit {done.returncode}): {done.stderr.strip()}")

    def status(self) -> dict[str, Any]:
        """``flattr-host status --json``."""
        done = self.cli("status", "--json")
        if done.returncode != 0:
            raise HostSetupError(f"flattr-host status failed (exit {done.returncode}): "
                                 f"{done.stderr.strip()}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def install(self, profile: Path) -> Path:
        """Install into a Chromium profile (``--user-data-dir``); returns the manifest."""
        self._install(["--browser", "chromium", "--user-data-dir", str(profile)],
                      self.chromium_ids)
        manifest = profile / "NativeMessagingHosts" / MANIFEST_NAME
        if not manifest.is_file():
            raise HostSetupError(f"flattr-host install wrote no {manifest}")
        return manifest

    def install_firefox(self, home: Path) -> Path:
        """``flattr-host install --browser firefox --home HOME``: the launcher pins this
        test's FLATTR_* settings, so a Firefox shared by tests starts this test's host."""
        self._install(["--browser", "firefox", "--home", str(home)], self.gecko_ids)
        manifest = home / ".mozilla" / "native-messaging-hosts" / MANIFEST_NAME
        allowed = json.loads(manifest.read_text())["allowed_extensions"]
        if not set(self.gecko_ids) <= set(allowed):
            raise HostSetupError(f"{manifest} admits {allowed}, not all of {self.gecko_ids}")
        return manifest

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON line of the host's log files, oldest file first."""
        lines = []
        for path in sorted((self.home / "logs").glob("*")):
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
        return lines

    def log_text(self) -> str:
        """The host's log files as written (for failure reports)."""
        parts = [f"--- {p.name}\n{p.read_text(errors='replace')}"
                 for p in sorted((self.home / "logs").glob("*.log*")) if p.is_file()]
        return "\n".join(parts) or f"(no host log under {self.home / 'logs'})"

    def requests(self) -> list[str]:
        """Types of the frames the host received (its debug log logs every frame in)."""
        return [
            str(line["message"].get("type"))
            for line in self.log_lines()
            if line.get("msg") == "frame in" and isinstance(line.get("message"), dict)
        ]

    def files_bytes(self) -> bytes:
        """Every file under the host's data folder, concatenated (for leak checks)."""
        return b"".join(p.read_bytes() for p in self.home.rglob("*") if p.is_file())
