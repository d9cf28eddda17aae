"""Wheels without a network: of this project, and of distributions already installed.

The packaging test installs the project's wheel into a fresh virtual environment
the way a user's ``pip install`` / ``pipx install`` would, resolving its
dependencies with pip. Here nothing may be downloaded, so the dependencies come
from this environment: :func:`wheel_from_installed` zips an installed
distribution's files (its ``RECORD``) back into a wheel that pip installs with
``--no-index --find-links``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def source_copy(dest: Path) -> Path:
    """The project's files (tracked and untracked, not ignored) copied to ``dest``,
    as a fresh clone would have them; falls back to the whole folder without .venv."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
        files = [f.decode() for f in listed if f]
    except (OSError, subprocess.CalledProcessError):
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]
    for name in files:
        src = ROOT / name
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def build_project_wheel(source: Path, out: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of ``source``: offline, this env's
    setuptools."""
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "wheel", "--no-deps",
                    "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True, env=_pip_env())
    [wheel] = out.glob("flattr_companion-*.whl")
    return wheel


def runtime_requirements(dist: str, extras: tuple[str, ...] = ()) -> list[str]:
    """Names of every distribution ``dist`` (with ``extras``) needs here, recursively."""
    seen: dict[str, None] = {}
    todo = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        for raw in metadata.distribution(name).requires or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                seen[key] = None
                todo.append((req.name, tuple(req.extras)))
    return list(seen)


def wheel_from_installed(name: str, out: Path) -> Path:
    """A wheel of the installed distribution ``name``, rebuilt from its RECORD."""
    dist = metadata.distribution(name)
    files = [f for f in dist.files or [] if not str(f).startswith("..")]
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    dist_name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    path = out / f"{dist_name}-{dist.version}-{tags[0] if tags else 'py3-none-any'}.whl"
    info_dir = next(str(f).split("/")[0] for f in files if str(f).endswith(".dist-info/METADATA"))
    record_lines = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in files:
            rel = str(entry)
            if rel.endswith(".dist-info/RECORD") or "__pycache__" in rel:
                continue
            local = Path(str(dist.locate_file(entry)))
            if not local.is_file():
                continue
            data = local.read_bytes()
            archive.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record_lines.append(f"{rel},sha256={digest.decode()},{len(data)}")
        record_lines.append(f"{info_dir}/RECORD,,")
        archive.writestr(f"{info_dir}/RECORD", "\n".join(record_lines) + "\n")
    return path


def _pip_env() -> dict[str, str]:
    """The environment without pip settings (no index, find-links or constraints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def install_into_fresh_venv(venv: Path, wheel: Path, links: Path, extras: str = "") -> Path:
    """A new virtual environment at ``venv`` (no access to this one) with ``wheel``
    (and ``extras``, e.g. "[fake-site]") installed by pip, dependencies only from
    ``links``; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--python", str(python), "install", "-q",
         "--no-index", "--find-links", str(links), f"{wheel}{extras}"],
        capture_output=True, text=True, env=_pip_env())
    if done.returncode != 0:
        raise AssertionError(f"pip install of {wheel.name} failed:\n{done.stdout}\n{done.stderr}")
    return python
