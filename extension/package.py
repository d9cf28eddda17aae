#!/usr/bin/env python3
"""Package the extension: write a build id into a copy and zip it for the stores.

Contract:
- The source folder (this file's folder) is never modified; loaded unpacked it
  reports the build id ``dev`` (``build.js``).
- ``package(out_dir, build_id)`` writes, under ``out_dir``:
  * ``flattr-companion-<version>/``: the unpacked extension with ``build.js``
    rewritten to the build id, ``key`` kept (same extension id as the source folder),
    usable with ``--load-extension`` and by the end-to-end suite;
  * ``flattr-companion-<version>-chromium.zip``: for the Chrome Web Store: no ``key``
    (the store refuses it and assigns the id), no Firefox-only keys;
  * ``flattr-companion-<version>-firefox.zip``: for addons.mozilla.org: no ``key``,
    no ``service_worker``, no ``minimum_chrome_version``.
  Zips are reproducible: sorted entries, fixed timestamps and modes, so the same
  sources and build id give the same bytes.
- The default build id is ``<version>+<first 12 hex of sha256 over the sources>``;
  ``--build-id`` overrides it (1 to 128 characters of ``[A-Za-z0-9._+-]``, the host's
  limit for ``extension.build`` in docs/protocol.md).
- Errors (bad build id, a missing file the manifest names, an unexpected
  ``build.js``) raise :class:`PackageError`; the CLI prints one line and exits 1.

Usage: ``python extension/package.py [--out DIR] [--build-id ID]`` (default out:
``dist/`` at the repository root). Prints one JSON line describing the outputs.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent
NAME = "flattr-companion"
# Files that are part of the extension; everything else in the folder (this script,
# caches) stays out of the package.
INCLUDE_SUFFIXES = {".js", ".json", ".html", ".css", ".png"}
EXCLUDE_NAMES = {"package.py"}
BUILD_FILE = "build.js"
BUILD_LINE = re.compile(r'^globalThis\.FLATTR_BUILD = "([^"\\]*)";$', re.MULTILINE)
BUILD_ID = re.compile(r"[A-Za-z0-9._+-]{1,128}")
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class PackageError(Exception):
    """Root of every error this packaging step raises."""


def source_files(source: Path = SOURCE) -> list[Path]:
    """The extension's files, relative to ``source``, sorted."""
    files = [
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file()
        and path.suffix in INCLUDE_SUFFIXES
        and path.name not in EXCLUDE_NAMES
        and not any(part.startswith(".") or part == "__pycache__" for part in path.parts)
    ]
    return sorted(files, key=lambda p: p.as_posix())


def read_manifest(source: Path = SOURCE) -> dict[str, Any]:
    """The parsed manifest.json of ``source``."""
    manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text("utf-8"))
    return manifest


def default_build_id(source: Path = SOURCE) -> str:
    """``<version>+<sha256 of the sources, 12 hex>``: same sources, same id."""
    digest = hashlib.sha256()
    for rel in source_files(source):
        digest.update(rel.as_posix().encode())
        digest.update(b"\0")
        digest.update((source / rel).read_bytes())
        digest.update(b"\0")
    return f"{read_manifest(source)['version']}+{digest.hexdigest()[:12]}"


def check_build_id(build_id: str) -> str:
    """Return ``build_id`` if the host will accept it, else raise PackageError."""
    if not BUILD_ID.fullmatch(build_id):
        raise PackageError(
            f"build id {build_id!r} must be 1 to 128 characters of A-Z a-z 0-9 . _ + - "
            f"(got {len(build_id)} characters)"
        )
    return build_id


def rewrite_build(text: str, build_id: str) -> str:
    """Replace the one ``globalThis.FLATTR_BUILD = "...";`` line of build.js."""
    matches = BUILD_LINE.findall(text)
    if len(matches) != 1:
        raise PackageError(
            f"{BUILD_FILE} must hold exactly one FLATTR_BUILD line, found {len(matches)}"
        )
    return BUILD_LINE.sub(f'globalThis.FLATTR_BUILD = "{build_id}";', text)


def referenced_files(manifest: dict[str, Any]) -> set[str]:
    """Every file path the manifest names (background, content scripts, popup, icons)."""
    names: set[str] = set()
    background = manifest.get("background", {})
    if "service_worker" in background:
        names.add(background["service_worker"])
    names.update(background.get("scripts", []))
    for script in manifest.get("content_scripts", []):
        names.update(script.get("js", []))
        names.update(script.get("css", []))
    action = manifest.get("action", {})
    if "default_popup" in action:
        names.add(action["default_popup"])
    names.update(action.get("default_icon", {}).values())
    names.update(manifest.get("icons", {}).values())
    return names


def store_manifest(manifest: dict[str, Any], store: str) -> dict[str, Any]:
    """The manifest as uploaded to ``store`` ("chromium" or "firefox")."""
    result = copy.deepcopy(manifest)
    result.pop("key", None)  # stores assign (Chrome) or ignore (Firefox) it
    background = result.setdefault("background", {})
    if store == "chromium":
        background.pop("scripts", None)
        result.pop("browser_specific_settings", None)
        # Without background.scripts, Chromium 120 loads the package too.
        result["minimum_chrome_version"] = "120"
    elif store == "firefox":
        background.pop("service_worker", None)
        result.pop("minimum_chrome_version", None)
    else:
        raise PackageError(f"unknown store {store!r}; expected 'chromium' or 'firefox'")
    return result


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])


def package(out_dir: Path, build_id: str | None = None, source: Path = SOURCE) -> dict[str, str]:
    """Write the unpacked copy and both store zips; return their paths and the build id."""
    manifest = read_manifest(source)
    build_id = check_build_id(build_id if build_id is not None else default_build_id(source))
    files = {rel.as_posix(): (source / rel).read_bytes() for rel in source_files(source)}
    missing = sorted(name for name in referenced_files(manifest) if name not in files)
    if missing:
        raise PackageError(f"manifest.json names files that do not exist: {', '.join(missing)}")
    files[BUILD_FILE] = rewrite_build(files[BUILD_FILE].decode("utf-8"), build_id).encode("utf-8")

    version = manifest["version"]
    out_dir.mkdir(parents=True, exist_ok=True)
    unpacked = out_dir / f"{NAME}-{version}"
    if unpacked.exists():
        shutil.rmtree(unpacked)
    for name, data in files.items():
        target = unpacked / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    outputs = {"build": build_id, "unpacked": str(unpacked)}
    for store in ("chromium", "firefox"):
        store_files = dict(files)
        store_json = json.dumps(store_manifest(manifest, store), indent=2) + "\n"
        store_files["manifest.json"] = store_json.encode("utf-8")
        zip_path = out_dir / f"{NAME}-{version}-{store}.zip"
        _zip(zip_path, store_files)
        outputs[store] = str(zip_path)
    return outputs


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description="Package the Flattr Companion extension.")
    parser.add_argument(
        "--out", type=Path, default=SOURCE.parent / "dist", help="output folder (default: dist/)"
    )
    parser.add_argument("--build-id", help="build identifier (default: <version>+<source hash>)")
    args = parser.parse_args(argv)
    try:
        outputs = package(args.out, args.build_id)
    except (PackageError, OSError, ValueError) as error:
        print(f"package.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
