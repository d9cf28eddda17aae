#!/usr/bin/env python3
"""Lint the extension as addons.mozilla.org does: Mozilla's addons-linter on the
Firefox store zip and on the source folder (docs/extension.md, Store checks).

Contract: packages the extension (``--source DIR``, default extension/) into a
temporary folder with extension/package.py,
runs ``.npm-tools/node_modules/.bin/addons-linter --output json`` (installed by
``make npm-tools``, version pinned in tools/npm/package.json) on both, prints every
message, and exits 1 if there is any error, or any warning that is not listed in
``EXPLAINED`` for that target (each is explained in docs/extension.md). Exits 2 when
the linter is not installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINTER = ROOT / ".npm-tools" / "node_modules" / ".bin" / "addons-linter"

# target -> warning codes accepted there, each explained in docs/extension.md.
EXPLAINED: dict[str, set[str]] = {
    # One unpacked folder serves Chromium (service_worker) and Firefox (scripts);
    # the Firefox zip carries scripts only and lints clean.
    "source folder": {
        "BACKGROUND_SERVICE_WORKER_IGNORED",
        "KEY_FIREFOX_ANDROID_UNSUPPORTED_BY_MIN_VERSION",
    },
    # Firefox for Android has no native messaging, so the add-on is not offered there;
    # its minimum Android version says nothing about a supported platform.
    "firefox zip": {"KEY_FIREFOX_ANDROID_UNSUPPORTED_BY_MIN_VERSION"},
}


def lint(target: Path) -> dict[str, list[dict[str, object]]]:
    """addons-linter's JSON report for ``target`` (a zip or a folder)."""
    done = subprocess.run(
        [str(LINTER), "--output", "json", str(target)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    try:
        report: dict[str, list[dict[str, object]]] = json.loads(done.stdout)
    except ValueError:
        raise SystemExit(
            f"addons-linter gave no JSON report for {target}: {done.stderr[-2000:]}") from None
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the linter on both targets; see the module docstring."""
    parser = argparse.ArgumentParser(description="addons-linter on the extension")
    parser.add_argument("--source", type=Path, default=ROOT / "extension",
                        help="extension folder (default: extension/)")
    source = parser.parse_args(argv).source.resolve()
    if not LINTER.exists():
        print(f"lint_extension: {LINTER} is missing; run `make npm-tools`", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "extension"))
    import package  # extension/package.py

    failures = 0
    with tempfile.TemporaryDirectory() as out:
        outputs = package.package(Path(out), "lint", source=source)
        for name, target in (("firefox zip", Path(outputs["firefox"])),
                             ("source folder", source)):
            report = lint(target)
            for kind in ("errors", "warnings", "notices"):
                for item in report.get(kind, []):
                    code = str(item.get("code"))
                    accepted = kind == "notices" or (kind == "warnings" and code in EXPLAINED[name])
                    failures += 0 if accepted else 1
                    mark = "ok (docs/extension.md)" if accepted and kind == "warnings" else (
                        "note" if kind == "notices" else "FAIL")
                    print(f"addons-linter {name}: {kind[:-1]} {code} {item.get('file', '')}:"
                          f" {item.get('message')} [{mark}]")
            summary = {k: len(report.get(k, [])) for k in ("errors", "warnings", "notices")}
            print(f"addons-linter {name}: {summary}")
    if failures:
        print(f"lint_extension: {failures} unexplained addons-linter messages", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
