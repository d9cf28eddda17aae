"""Browser host manifests: where each browser looks, and writing them.

The manifest's ``path`` points at a small launcher script written beside it, which
fixes the interpreter (an absolute path: hosts started from a desktop launcher or
the macOS Dock get no shell PATH) and the data directory at install time; the
environment can still override ``FLATTR_HOST_HOME``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flattr_host import HOST_NAME, __version__
from flattr_host.config import CHROMIUM_EXTENSION_ID
from flattr_host.errors import InstallError

MANIFEST_NAME = f"{HOST_NAME}.json"
LAUNCHER_NAME = f"{HOST_NAME}-launcher"
LAUNCHER_MARK = "# Written by `flattr-host install`"
TEMPLATES = Path(__file__).resolve().parent.parent / "manifests"

#: Per-user manifest folders on Linux, relative to $HOME (Chrome docs: native messaging).
LINUX_USER_DIRS = {
    "chromium": ".config/chromium/NativeMessagingHosts",
    "chrome": ".config/google-chrome/NativeMessagingHosts",
}


@dataclass(frozen=True)
class Installed:
    manifest: Path
    launcher: Path


def manifest_dir(browser: str, user_data_dir: Path | None, home: Path | None = None) -> Path:
    """The folder ``browser`` reads host manifests from."""
    if browser not in LINUX_USER_DIRS:
        raise InstallError(f"unknown browser {browser!r} (known: {', '.join(LINUX_USER_DIRS)})")
    if user_data_dir is not None:
        # A profile started with --user-data-dir reads manifests only from there
        # (../shared/ENVIRONMENT.md).
        return user_data_dir / "NativeMessagingHosts"
    return (home or Path.home()) / LINUX_USER_DIRS[browser]


def chromium_manifest(launcher: Path, extension_ids: list[str]) -> dict[str, Any]:
    return {
        "name": HOST_NAME,
        "description": "Flattr companion native messaging host",
        "path": str(launcher),
        "type": "stdio",
        "allowed_origins": [f"chrome-extension://{ext}/" for ext in extension_ids],
    }


def launcher_script(python: str, data_home: Path) -> str:
    """A POSIX launcher that execs this interpreter by absolute path."""
    return (
        "#!/bin/sh\n"
        f"{LAUNCHER_MARK} (flattr-companion {__version__}); re-run install to change it.\n"
        f"FLATTR_HOST_HOME=\"${{FLATTR_HOST_HOME:-{data_home}}}\"\n"
        "export FLATTR_HOST_HOME\n"
        f"exec {shlex.quote(python)} -c "
        "'import sys; from flattr_host.cli import main; sys.exit(main())' \"$@\"\n"
    )


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install(browser: str, user_data_dir: Path | None, extension_ids: list[str] | None,
            data_home: Path, python: str | None = None) -> Installed:
    """Write the launcher and the manifest (idempotent)."""
    folder = manifest_dir(browser, user_data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        launcher = folder / LAUNCHER_NAME
        _write_atomic(launcher, launcher_script(python or sys.executable, data_home), 0o755)
        manifest = folder / MANIFEST_NAME
        body = chromium_manifest(launcher, extension_ids or [CHROMIUM_EXTENSION_ID])
        _write_atomic(manifest, json.dumps(body, indent=2) + "\n", 0o644)
    except OSError as exc:
        raise InstallError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return Installed(manifest, launcher)


def uninstall(browser: str, user_data_dir: Path | None) -> list[Path]:
    """Remove what :func:`install` wrote; returns the removed paths."""
    folder = manifest_dir(browser, user_data_dir)
    removed = []
    launcher = folder / LAUNCHER_NAME
    if launcher.exists() and LAUNCHER_MARK in launcher.read_text(errors="replace"):
        launcher.unlink()
        removed.append(launcher)
    manifest = folder / MANIFEST_NAME
    if manifest.exists():
        try:
            data = json.loads(manifest.read_text())
        except ValueError:
            data = {}
        if data.get("path") == str(launcher):
            manifest.unlink()
            removed.append(manifest)
    return removed
