"""Which extension a test browser loads, and the identities it will have there.

An :class:`Extension` is an unpacked extension folder read once: its manifest, the
id Chromium gives it (from the manifest's ``key``, else from the folder's absolute
path, as Chromium does for unpacked extensions), its Firefox add-on id
(``browser_specific_settings.gecko.id``), its version and, for this project's
extension, its build id (``build.js``).

The default is this project's own extension: ``FLATTR_EXTENSION`` (or the older
``FLATTR_E2E_EXTENSION``) when set, else the one flattr_host ships
(``flattr-host extension``: in a checkout, the repository's ``extension/`` folder).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flattr_testing.errors import FlattrTestingError

_BUILD = re.compile(r'FLATTR_BUILD = "([^"]*)"')


class ExtensionError(FlattrTestingError):
    """The folder is not an unpacked extension this kit can load."""


def _id_from_bytes(data: bytes) -> str:
    """Chromium's extension id: the first 128 bits of SHA-256, hex digits 0-f as a-p."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def default_extension_dir() -> Path:
    """This project's extension (see the module docstring for the order)."""
    configured = os.environ.get("FLATTR_EXTENSION") or os.environ.get("FLATTR_E2E_EXTENSION")
    if configured:
        return Path(configured)
    from flattr_host.tools.extension_files import extension_folder

    return extension_folder()


@dataclass(frozen=True)
class Extension:
    """An unpacked extension folder and the ids browsers will give it."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Extension:
        """Read ``path`` (default: :func:`default_extension_dir`); raises ExtensionError
        naming the folder when it has no readable manifest.json."""
        folder = Path(path) if path is not None else default_extension_dir()
        folder = folder.expanduser().resolve()
        manifest_path = folder / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ExtensionError(f"{folder} is not an unpacked extension: "
                                 f"cannot read {manifest_path.name} ({error})") from None
        if not isinstance(manifest, dict):
            raise ExtensionError(f"{manifest_path} holds {type(manifest).__name__}, not an object")
        return cls(folder, manifest)

    @property
    def chromium_id(self) -> str:
        """The id Chromium assigns when loading this folder unpacked."""
        key = self.manifest.get("key")
        if isinstance(key, str) and key:
            return _id_from_bytes(base64.b64decode(key))
        return _id_from_bytes(str(self.path).encode())

    @property
    def gecko_id(self) -> str | None:
        """The Firefox add-on id from the manifest (None: Firefox cannot load it
        temporarily with a fixed id, and the host cannot be told whom to admit)."""
        settings = self.manifest.get("browser_specific_settings") or {}
        gecko = settings.get("gecko") if isinstance(settings, dict) else None
        value = gecko.get("id") if isinstance(gecko, dict) else None
        return value if isinstance(value, str) else None

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    @property
    def build_id(self) -> str | None:
        """``FLATTR_BUILD`` from build.js (this project's extension), else None."""
        try:
            match = _BUILD.search((self.path / "build.js").read_text(encoding="utf-8"))
        except OSError:
            return None
        return match[1] if match else None

    @property
    def chromium_origin(self) -> str:
        return f"chrome-extension://{self.chromium_id}/"

    def chromium_url(self, path: str) -> str:
        """e.g. ``chromium_url("popup/popup.html")``."""
        return self.chromium_origin + path.lstrip("/")

    @property
    def popup_path(self) -> str | None:
        """The action popup's path inside the extension (None if it has none)."""
        action = self.manifest.get("action") or {}
        popup = action.get("default_popup") if isinstance(action, dict) else None
        return str(popup) if popup else None
