"""Where the browser extension this package carries is (``flattr-host extension``).

The wheel ships the unpacked extension as package data (``flattr_host/extension``,
docs/install.md): the folder to give ``--load-extension`` or "Load unpacked", or
to pass to ``about:debugging`` in Firefox. An editable install from a checkout
maps that package to the checkout's ``extension/`` folder.
"""

from __future__ import annotations

from pathlib import Path

from flattr_host.core.errors import InstallError


def extension_folder() -> Path:
    """The folder holding the extension's ``manifest.json``; InstallError if none."""
    import importlib.util

    candidates: list[Path] = [Path(__file__).resolve().parent.parent / "extension"]
    try:
        spec = importlib.util.find_spec("flattr_host.extension")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    candidates += _editable_locations()
    for folder in candidates:
        if (folder / "manifest.json").is_file():
            return folder
    raise InstallError("this install of flattr-companion carries no extension folder; "
                       "build one with `make package` in a checkout (docs/install.md)")


def _editable_locations() -> list[Path]:
    """Where an editable install maps ``flattr_host.extension`` (setuptools' finder)."""
    import sys

    out = []
    for finder in sys.meta_path:
        mapping = getattr(sys.modules.get(getattr(finder, "__module__", "")), "MAPPING", None)
        if isinstance(mapping, dict) and isinstance(mapping.get("flattr_host.extension"), str):
            out.append(Path(mapping["flattr_host.extension"]))
    return out
