"""What the harness spawns and how: the host as Chrome starts it, and the echo hosts.

Chrome starts a native host with argv ``[path, "chrome-extension://<id>/"]``,
cwd = the folder of ``path`` (the launcher named in the host manifest), stdio
pipes, and the browser's environment (docs/performance.md). The harness
finds ``path`` the way a user gets it: ``flattr-host install --browser chromium
--user-data-dir DIR`` writes ``DIR/NativeMessagingHosts/com.flattr.companion.json``.
Until the installer exists it falls back to ``sys.executable -m flattr_host``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.model import BenchError, NotAvailable

EXTENSION_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
ORIGIN = f"chrome-extension://{EXTENSION_ID}/"
HOST_NAME = "com.flattr.companion"
HELLO_EXTENSION = {"id": EXTENSION_ID, "version": "0.1.0", "build": "bench"}
BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
BASELINES = BENCH_DIR / "baselines"
# Loopback port nothing listens on: keeps a host that tries to deliver on this
# machine (the brief: loopback only), failing fast with "connection refused".
CLOSED_API = "https://127.0.0.1:9"


@dataclass(frozen=True)
class Command:
    """An argv and cwd to spawn, with a human description of where it came from."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    how: str


class Workspace:
    """A temporary folder for one run: host homes, databases, logs, binaries."""

    def __init__(self, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="flattr-bench-"))
        self.keep = keep
        self._serial = 0

    def fresh(self, label: str) -> Path:
        """A new empty sub-folder (mode 0700, like a host data directory)."""
        self._serial += 1
        path = self.path / f"{self._serial:04d}-{label}"
        path.mkdir(mode=0o700)
        return path

    def cleanup(self) -> None:
        """Remove the workspace unless asked to keep it."""
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


def module_has(package: str, module: str) -> bool:
    """Whether ``package`` is importable and ships ``module``.py, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(p) / f"{module}.py").is_file() for p in spec.submodule_search_locations)


def require_host() -> None:
    """Raise NotAvailable unless the host package can be run."""
    for module in ("__main__", "tools/cli"):  # the entry and the tools it runs
        if not module_has("flattr_host", module):
            raise NotAvailable(f"host not landed: flattr_host has no {module} module")


def host_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a browser-launched host gets, pointed at ``home``.

    Inherited FLATTR_* settings are dropped so the user's own configuration cannot
    leak in; the API base defaults to a closed loopback port (no traffic leaves).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLATTR_")}
    env["FLATTR_HOST_HOME"] = str(home)
    env["FLATTR_API_BASE"] = CLOSED_API
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


def _cli_argv() -> list[str]:
    script = Path(sys.executable).parent / "flattr-host"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "flattr_host"]


def module_command() -> Command:
    """The host run as ``sys.executable -m flattr_host <origin>``."""
    return Command(
        "host (python -m)",
        (sys.executable, "-m", "flattr_host", ORIGIN),
        Path(sys.executable).parent,
        f"{sys.executable} -m flattr_host",
    )


def installed_command(
    ws: Workspace, user_data: Path | None = None
) -> tuple[Command | None, str]:
    """The launcher that ``flattr-host install`` registers, or None and why not.

    The manifest goes into ``user_data`` (a Chromium user data dir; fresh if None),
    where a browser started with that dir looks for it.
    """
    user_data = user_data if user_data is not None else ws.fresh("install")
    home = ws.fresh("install-home")
    env = host_env(home, {"HOME": str(home)})
    argv = [*_cli_argv(), "install", "--browser", "chromium", "--user-data-dir", str(user_data)]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"install failed to run: {exc}"
    manifest = user_data / "NativeMessagingHosts" / f"{HOST_NAME}.json"
    if done.returncode != 0 or not manifest.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return None, f"install not available (exit {done.returncode}): {last[0][:200]}"
    path = Path(json.loads(manifest.read_text())["path"])
    if not path.is_absolute() or not os.access(path, os.X_OK):
        raise BenchError(f"host manifest path {path} is not an absolute executable")
    return Command("host (launcher)", (str(path), ORIGIN), path.parent, f"launcher {path}"), ""


def host_command(ws: Workspace) -> tuple[Command, list[str]]:
    """How to spawn the host as Chrome does, with notes on what was chosen."""
    require_host()
    command, why = installed_command(ws)
    if command is not None:
        return command, [f"host spawned through the installed launcher {command.argv[0]}"]
    return module_command(), [f"host spawned as {sys.executable} -m flattr_host ({why})"]


def python_echo_command() -> Command:
    """The minimal Python echo host, run by the harness's own interpreter."""
    script = BASELINES / "echo_host.py"
    return Command(
        "echo host (Python)", (sys.executable, str(script), ORIGIN), BASELINES, str(script)
    )


def python_echo_nosite_command() -> Command:
    """The same echo host with ``python -S``: the floor for a Python host.

    The host's launcher runs ``python -S`` too (docs/performance.md), so this is the
    strict comparison; the plain echo host is what a typical Python host costs.
    """
    script = BASELINES / "echo_host.py"
    return Command(
        "echo host (Python -S)", (sys.executable, "-S", str(script), ORIGIN), BASELINES,
        f"-S {script}",
    )


def c_echo_command(ws: Workspace) -> tuple[Command | None, str]:
    """The C echo host compiled with the system compiler, or None and why not."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None, "no C compiler (cc, gcc, clang) on PATH"
    out = ws.fresh("c-echo") / "echo_host"
    done = subprocess.run(
        [compiler, "-O2", "-o", str(out), str(BASELINES / "echo_host.c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise BenchError(f"{compiler} failed on echo_host.c: {done.stderr.strip()[:300]}")
    return Command("echo host (C)", (str(out), ORIGIN), out.parent, f"{compiler} -O2"), ""
