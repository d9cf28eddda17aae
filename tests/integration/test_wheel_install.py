"""The wheel, installed as a user installs it, works on its own (docs/install.md).

Builds the wheel offline from a copy of the source (as a clone has it), installs
it with pip into a fresh virtual environment in a temporary folder, its
dependencies resolved by pip from wheels of this environment's distributions
(no network, no view of this environment or the source tree), and there runs what
a user runs: ``flattr-host --version``, ``install``, the launcher answering
``hello`` exactly as Chrome starts it, ``doctor`` against the fake site,
``status``, ``extension``, ``completion``, ``uninstall`` and ``uninstall --purge``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flattr_host import __version__
from flattr_host.core.config import CHROMIUM_EXTENSION_ID
from tests.support.fake_site import FakeSite
from tests.support.host import frame
from tests.support.wheels import (
    ROOT,
    build_project_wheel,
    install_into_fresh_venv,
    runtime_requirements,
    source_copy,
    wheel_from_installed,
)

pytestmark = pytest.mark.slow


@dataclass
class Installed:
    venv: Path
    python: Path
    tmp: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "flattr-host"

    def env(self, **extra: str) -> dict[str, str]:
        # What a desktop session passes: no PYTHONPATH, no virtual environment.
        return {"HOME": str(self.tmp / "home"), "PATH": "/usr/bin:/bin",
                "FLATTR_HOST_HOME": str(self.tmp / "data"), "LANG": "C.UTF-8", **extra}

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.command), *args], capture_output=True, text=True,
                              cwd=self.tmp, env=self.env(**extra), timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.is_relative_to(ROOT)
    wheels = tmp / "wheels"
    wheels.mkdir()
    project = build_project_wheel(source_copy(tmp / "src"), wheels)
    for name in runtime_requirements("flattr-companion"):
        wheel_from_installed(name, wheels)
    python = install_into_fresh_venv(tmp / "venv", project, wheels)
    (tmp / "home").mkdir()
    yield Installed(tmp / "venv", python, tmp)


def test_the_wheel_carries_the_templates_the_extension_and_the_licence(
        installed: Installed) -> None:
    [wheel] = (installed.tmp / "wheels").glob("flattr_companion-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for template in ("chromium.json", "firefox.json", "launcher.sh", "launcher.cmd",
                     "launcher-flatpak.sh"):
        assert f"flattr_host/templates/{template}" in names
    assert "flattr_host/extension/manifest.json" in names
    assert "flattr_host/extension/background.js" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Requires-Dist: cryptography" in text and "Project-URL: " in text
    assert "Requires-Dist: aiohttp" in text and "extra == \"fake-site\"" in text
    assert "License: MIT" in text or "License-Expression: MIT" in text


def test_base_install_has_the_host_dependencies_only(installed: Installed) -> None:
    probe = ("import importlib.util as u, sys; print(sys.prefix); "
             "print([m for m in ('cryptography', 'websockets', 'aiohttp') if u.find_spec(m)])")
    out = subprocess.run([str(installed.python), "-c", probe], capture_output=True, text=True,
                         cwd=installed.tmp, env=installed.env(), check=True).stdout.splitlines()
    assert Path(out[0]) == installed.venv
    assert out[1] == "['cryptography', 'websockets']"


def test_version(installed: Installed) -> None:
    done = installed.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"flattr-host {__version__}"


def test_install_launcher_doctor_uninstall(installed: Installed, fake_site: FakeSite) -> None:
    profile = installed.tmp / "profile"
    done = installed.run("install", "--browser", "chromium", "--user-data-dir", str(profile))
    assert done.returncode == 0, done.stderr
    manifest = profile / "NativeMessagingHosts" / "com.flattr.companion.json"
    body = json.loads(manifest.read_text())
    launcher = Path(body["path"])
    text = launcher.read_text()
    # The launcher runs the fresh environment's Python and package, not this checkout.
    assert str(installed.venv) in text and str(ROOT) not in text

    # The launcher answers hello as Chrome starts it: argv, cwd, a bare environment.
    # set-token seals the token with cryptography: the fresh environment's copy.
    hello = frame({"id": 1, "type": "hello", "extension": {
        "id": CHROMIUM_EXTENSION_ID, "version": "1", "build": "wheel"}})
    sign_in = frame({"id": 2, "type": "set-token", "accessToken": "wheel-test-token",
                     "subscription": {"active": True}})
    proc = subprocess.run([str(launcher), f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"],
                          input=hello + sign_in, capture_output=True, cwd=launcher.parent,
                          env={"HOME": str(installed.tmp / "home")}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    replies = {}
    rest = proc.stdout
    while rest:
        size = int.from_bytes(rest[:4], sys.byteorder)
        message = json.loads(rest[4:4 + size])
        rest = rest[4 + size:]
        if "id" in message:
            replies[message["id"]] = message
    assert replies[1]["ok"] is True and replies[1]["result"]["host"]["version"] == __version__
    assert replies[2]["ok"] is True, replies[2]

    doctor = installed.run("doctor", "--browser", "chromium", "--user-data-dir", str(profile),
                           "--timeout", "30", FLATTR_API_BASE=fake_site.api,
                           FLATTR_CA_BUNDLE=fake_site.ca)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "all checks passed" in doctor.stdout and "API reachable: HTTP 200" in doctor.stdout
    assert "token decryptable: the stored token decrypts" in doctor.stdout

    status = installed.run("status")
    assert status.returncode == 0, status.stderr
    assert "signed in        yes" in status.stdout

    gone = installed.run("uninstall", "--browser", "chromium", "--user-data-dir", str(profile))
    assert gone.returncode == 0, gone.stderr
    assert f"removed {manifest}" in gone.stdout and f"removed {launcher}" in gone.stdout
    assert not manifest.exists() and not launcher.exists()
    data = installed.tmp / "data"
    assert f"data directory stays: {data}" in gone.stdout and data.is_dir()

    purged = installed.run("uninstall", "--browser", "chromium", "--user-data-dir",
                           str(profile), "--purge")
    assert purged.returncode == 0, purged.stderr
    assert f"purging data directory {data}:" in purged.stdout
    assert "host.db: the store" in purged.stdout
    assert not data.exists()


def test_extension_folder_is_in_the_installed_package(installed: Installed) -> None:
    done = installed.run("extension")
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.is_relative_to(installed.venv)
    assert json.loads((folder / "manifest.json").read_text())["manifest_version"] == 3


def test_completion_script(installed: Installed) -> None:
    done = installed.run("completion", "bash")
    assert done.returncode == 0 and "complete -o filenames -F _flattr_host flattr-host" in \
        done.stdout


def test_fake_site_needs_its_extra(installed: Installed) -> None:
    """The base install leaves aiohttp out; the fake site says which extra brings it."""
    done = subprocess.run([str(installed.venv / "bin" / "flattr-fake-site")],
                          capture_output=True, text=True, cwd=installed.tmp,
                          env=installed.env(), timeout=60)
    assert done.returncode == 2
    assert "flattr-companion[fake-site]" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_module_of_the_checkout_is_used(installed: Installed) -> None:
    probe = "import flattr_host, fake_flattr; print(flattr_host.__file__, fake_flattr.__file__)"
    out = subprocess.run([str(installed.python), "-c", probe], capture_output=True, text=True,
                         cwd=installed.tmp, env={**installed.env(), "PYTHONNOUSERSITE": "1"},
                         check=True).stdout
    assert str(ROOT) not in out and str(installed.venv) in out
    assert os.path.commonpath([installed.venv, Path(out.split()[0])]) == str(installed.venv)


def test_fake_site_extra_runs_from_the_wheel(installed: Installed) -> None:
    """``pip install 'flattr-companion[fake-site]'``: the fake site starts from the wheel
    (its pages and static files are package data) and answers over HTTPS."""
    import select
    import ssl
    import urllib.request

    wheels = installed.tmp / "wheels"
    [project] = wheels.glob("flattr_companion-*.whl")
    for name in runtime_requirements("flattr-companion", ("fake-site",)):
        if not list(wheels.glob(f"{name.replace('-', '_')}-*.whl")):
            wheel_from_installed(name, wheels)
    venv = installed.tmp / "venv-fake-site"
    install_into_fresh_venv(venv, project, wheels, "[fake-site]")
    proc = subprocess.Popen([str(venv / "bin" / "flattr-fake-site"), "--seed"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=installed.tmp,
                            env=installed.env())
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no ready line within 60 s"
        line = json.loads(proc.stdout.readline())
        context = ssl.create_default_context(cafile=line["ca"])
        assert line["api"].startswith("https://127.0.0.1:")
        with urllib.request.urlopen(line["api"] + "/rest/v2/categories",  # noqa: S310
                                    context=context, timeout=30) as answer:
            assert json.loads(answer.read())[0]["id"] == "text"
        with urllib.request.urlopen(line["site"] + "/", context=context,  # noqa: S310
                                    timeout=30) as page:
            assert page.status == 200
    finally:
        proc.terminate()
        proc.wait(30)
