"""Doctor: a healthy install passes; breaking each link in turn makes doctor name
that link, print its fix and exit non-zero. The launcher really runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from argparse import Namespace
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flattr_host.tools import doctor
from flattr_host.tools import install as inst
from flattr_testing.host import ORIGIN, running_host

OTHER_ID = "abcdefghijklmnopabcdefghijklmnop"
TOKEN = "doctor-test-token-5f2c9a71"


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"hourly_limit": 100}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class Setup:
    profile: Path
    data: Path
    env: dict[str, str]

    @property
    def folder(self) -> Path:
        return self.profile / "NativeMessagingHosts"

    @property
    def manifest(self) -> Path:
        return self.folder / inst.MANIFEST_NAME

    @property
    def launcher(self) -> Path:
        return self.folder / inst.LAUNCHER_NAME

    def edit_manifest(self, change: Callable[[dict[str, object]], None]) -> None:
        body = json.loads(self.manifest.read_text())
        change(body)
        self.manifest.write_text(json.dumps(body))


@pytest.fixture
def setup(tmp_path: Path, api: str) -> Setup:
    data = tmp_path / "data"
    env = {**os.environ, "FLATTR_HOST_HOME": str(data), "FLATTR_API_BASE": api,
           "FLATTR_EXIT_GRACE_S": "0.5"}
    env.pop("FLATTR_ALLOWED_EXTENSIONS", None)
    subprocess.run([sys.executable, "-m", "flattr_host", "install", "--browser", "chromium",
                    "--user-data-dir", str(tmp_path / "profile")], check=True, env=env,
                   capture_output=True)
    return Setup(tmp_path / "profile", data, env)


def run_doctor(setup: Setup, timeout: float = 10.0, **extra: object) -> tuple[bool, str]:
    options = Namespace(browser="chromium", user_data_dir=setup.profile, home=None,
                        scope="user", extension_ids=None, timeout=timeout, skip_api=False)
    for key, value in extra.items():
        setattr(options, key, value)
    out = io.StringIO()
    plat = inst.Platform("linux", setup.profile.parent, setup.env)
    passed = doctor.run(options, plat, setup.env, out)
    return passed, out.getvalue()


def failed(report: str) -> list[str]:
    return [line.split("FAIL", 1)[1].split(":", 1)[0].strip()
            for line in report.splitlines() if line.strip().startswith("FAIL")]


def test_a_healthy_install_passes_every_check(setup: Setup) -> None:
    passed, report = run_doctor(setup)
    assert passed, report
    for name in (doctor.MANIFEST_PRESENT, doctor.VALID_JSON, doctor.NAME_MATCHES,
                 doctor.PATH_EXECUTABLE, doctor.EXTENSION_ALLOWED, doctor.HELLO,
                 doctor.DATA_PERMISSIONS, doctor.STORE_READABLE, doctor.TOKEN_DECRYPTABLE,
                 doctor.API_REACHABLE):
        assert f"ok    {name}:" in report
    assert report.rstrip().endswith("all checks passed")


def _no_manifest(s: Setup) -> None:
    s.manifest.unlink()


def _bad_json(s: Setup) -> None:
    s.manifest.write_text('{"name": "com.flattr.companion",')


def _wrong_name(s: Setup) -> None:
    s.edit_manifest(lambda b: b.update(name="com.flattr.other"))


def _relative_path(s: Setup) -> None:
    s.edit_manifest(lambda b: b.update(path=inst.LAUNCHER_NAME))


def _not_executable(s: Setup) -> None:
    s.launcher.chmod(0o644)


def _missing_launcher(s: Setup) -> None:
    s.launcher.unlink()


def _other_extension(s: Setup) -> None:
    s.edit_manifest(lambda b: b.update(allowed_origins=[f"chrome-extension://{OTHER_ID}/"]))


def _hanging_launcher(s: Setup) -> None:
    s.launcher.write_text("#!/bin/sh\nexec sleep 30\n")


def _broken_python(s: Setup) -> None:
    s.launcher.write_text("#!/bin/sh\necho 'No module named flattr_host' >&2\nexit 1\n")


def _host_refuses_extension(s: Setup) -> None:
    s.env["FLATTR_ALLOWED_EXTENSIONS"] = OTHER_ID


def _open_data_dir(s: Setup) -> None:
    s.data.mkdir(mode=0o700, exist_ok=True)
    s.data.chmod(0o755)


def _open_file(s: Setup) -> None:
    s.data.mkdir(mode=0o700, exist_ok=True)
    (s.data / "token.key").write_bytes(os.urandom(32))
    (s.data / "token.key").chmod(0o644)


def _corrupt_store(s: Setup) -> None:
    s.data.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(s.data / "host.db", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"this is not a database" * 100)
    os.close(fd)


def _api_down(s: Setup) -> None:
    s.env["FLATTR_API_BASE"] = "http://127.0.0.1:9"


BREAKS: dict[str, tuple[Callable[[Setup], None], str, str]] = {
    # break -> (how, the check doctor must name, a word of the fix)
    "manifest removed": (_no_manifest, doctor.MANIFEST_PRESENT, "flattr-host install"),
    "invalid JSON": (_bad_json, doctor.VALID_JSON, "flattr-host install"),
    "wrong name": (_wrong_name, doctor.NAME_MATCHES, "flattr-host install"),
    "relative path": (_relative_path, doctor.PATH_EXECUTABLE, "flattr-host install"),
    "not executable": (_not_executable, doctor.PATH_EXECUTABLE, "flattr-host install"),
    "launcher missing": (_missing_launcher, doctor.PATH_EXECUTABLE, "flattr-host install"),
    "extension not allowed": (_other_extension, doctor.EXTENSION_ALLOWED, "--extension-id"),
    "launcher hangs": (_hanging_launcher, doctor.HELLO, "--timeout"),
    "launcher cannot run Python": (_broken_python, doctor.HELLO, "right Python"),
    "host config refuses the id": (_host_refuses_extension, doctor.HELLO, "--extension-id"),
    "data directory open": (_open_data_dir, doctor.DATA_PERMISSIONS, "chmod 700"),
    "key file open": (_open_file, doctor.DATA_PERMISSIONS, "chmod 600"),
    "store corrupt": (_corrupt_store, doctor.STORE_READABLE, "mv "),
    "API unreachable": (_api_down, doctor.API_REACHABLE, "FLATTR_API_BASE"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_broken_link_is_named_with_its_fix(setup: Setup, name: str) -> None:
    breaker, check, fix_word = BREAKS[name]
    breaker(setup)
    passed, report = run_doctor(setup, timeout=2.0)
    assert not passed
    assert failed(report) == [check], report
    fix_line = report.split(f"FAIL  {check}:", 1)[1].splitlines()[1]
    assert fix_line.strip().startswith("fix:") and fix_word in fix_line, report


def test_undecryptable_token_is_named_and_never_printed(setup: Setup) -> None:
    launcher = Path(json.loads(setup.manifest.read_text())["path"])
    with running_host(launcher, setup.data, env={"FLATTR_API_BASE": setup.env["FLATTR_API_BASE"]}
                      ) as host:
        host.request("hello", extension={"id": ORIGIN[19:51], "version": "1", "build": "t"})
        assert host.request("set-token", accessToken=TOKEN)["result"]["authenticated"]
    passed, report = run_doctor(setup)
    assert passed and "the stored token decrypts" in report and TOKEN not in report
    key = setup.data / "token.key"
    key.write_bytes(os.urandom(32))
    passed, report = run_doctor(setup)
    assert failed(report) == [doctor.TOKEN_DECRYPTABLE] and TOKEN not in report
    assert "sign in again" in report


def test_manifest_in_another_browsers_folder_is_pointed_out(tmp_path: Path, api: str) -> None:
    env = {**os.environ, "FLATTR_HOST_HOME": str(tmp_path / "data"), "FLATTR_API_BASE": api}
    plat = inst.Platform("linux", tmp_path, env, which=lambda _c: None)
    inst.install("chrome", plat, data_home=tmp_path / "data")
    options = Namespace(browser="chromium", user_data_dir=None, home=tmp_path, scope="user",
                        extension_ids=None, timeout=5.0, skip_api=True)
    out = io.StringIO()
    assert not doctor.run(options, plat, env, out)
    report = out.getvalue()
    assert failed(report) == [doctor.MANIFEST_PRESENT]
    assert "chrome's folder" in report and "chromium does not read" in report
    assert f"--home {tmp_path}" in report


def test_flatpak_browser_needs_the_override(tmp_path: Path, api: str) -> None:
    app = "org.chromium.Chromium"
    (tmp_path / ".var/app" / app).mkdir(parents=True)
    env = {**os.environ, "FLATTR_HOST_HOME": str(tmp_path / "data"), "FLATTR_API_BASE": api}
    plat = inst.Platform("linux", tmp_path, env, which=lambda _c: None,
                         exists=lambda p: str(p).startswith(str(tmp_path)) and p.exists())
    inst.install("chromium", plat, data_home=tmp_path / "data")
    (tmp_path / ".config/chromium/NativeMessagingHosts" / inst.MANIFEST_NAME).unlink()
    options = Namespace(browser="chromium", user_data_dir=None, home=tmp_path, scope="user",
                        extension_ids=None, timeout=10.0, skip_api=True)
    out = io.StringIO()
    assert not doctor.run(options, plat, env, out)
    report = out.getvalue()
    assert failed(report) == [doctor.FLATPAK_PERMISSION], report
    assert f"flatpak override --user --talk-name=org.freedesktop.Flatpak {app}" in report
    assert f"ok    {doctor.HELLO}" in report  # the real launcher beside the wrapper answers


def test_cli_exit_status(setup: Setup) -> None:
    args = [sys.executable, "-m", "flattr_host", "doctor", "--browser", "chromium",
            "--user-data-dir", str(setup.profile)]
    ok = subprocess.run(args, capture_output=True, text=True, env=setup.env, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    setup.manifest.unlink()
    bad = subprocess.run(args, capture_output=True, text=True, env=setup.env, timeout=60)
    assert bad.returncode == 1 and f"FAIL  {doctor.MANIFEST_PRESENT}" in bad.stdout


@pytest.mark.parametrize("family", ["chromium", "firefox"])
def test_manifest_dir_for_an_unlisted_browser(tmp_path: Path, api: str, family: str) -> None:
    """A fork we do not list (Thorium, LibreWolf, ...): install and doctor take the
    folder it reads and the family of its manifests."""
    env = {**os.environ, "FLATTR_HOST_HOME": str(tmp_path / "data"), "FLATTR_API_BASE": api,
           "FLATTR_EXIT_GRACE_S": "0.5"}
    env.pop("FLATTR_ALLOWED_EXTENSIONS", None)
    folder = tmp_path / "fork" / "native-messaging-hosts"
    cli = [sys.executable, "-m", "flattr_host"]
    where = ["--manifest-dir", str(folder), "--family", family]
    done = subprocess.run([*cli, "install", *where], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    body = json.loads((folder / inst.MANIFEST_NAME).read_text())
    key = "allowed_origins" if family == "chromium" else "allowed_extensions"
    assert key in body and Path(body["path"]).parent == folder
    report = subprocess.run([*cli, "doctor", *where, "--timeout", "20"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    assert f"custom ({folder / inst.MANIFEST_NAME})" in report.stdout
    assert f"ok    {doctor.HELLO}" in report.stdout
    gone = subprocess.run([*cli, "uninstall", *where], capture_output=True, text=True, env=env,
                          timeout=60)
    assert f"removed {folder / inst.MANIFEST_NAME}" in gone.stdout
    assert not (folder / inst.MANIFEST_NAME).exists()
    missing = subprocess.run([*cli, "doctor", *where, "--skip-api"], capture_output=True,
                             text=True, env=env, timeout=60)
    assert missing.returncode == 1
    assert f"--manifest-dir {folder} --family {family}" in missing.stdout


def test_firefox_manifest_in_the_system_folder_its_build_does_not_read(tmp_path: Path,
                                                                      api: str) -> None:
    root = tmp_path / "root"
    libxul = root / "usr/lib/firefox-esr/libxul.so"
    libxul.parent.mkdir(parents=True)
    libxul.write_bytes(b"\0/usr/lib/mozilla\0")  # a build reading /usr/lib/mozilla
    (root / "usr/lib64").mkdir(parents=True)
    env = {**os.environ, "FLATTR_HOST_HOME": str(tmp_path / "data"), "FLATTR_API_BASE": api}
    plat = inst.Platform("linux", tmp_path / "home", env, which=lambda _c: None, root=root,
                         libxul=("/usr/lib/firefox-esr/libxul.so",))
    lib64 = root / "usr/lib64/mozilla/native-messaging-hosts"
    inst.install_at(inst.Location("firefox", "system", lib64), plat, None, None)
    options = Namespace(browser="firefox", user_data_dir=None, home=None, scope="user",
                        extension_ids=None, timeout=5.0, skip_api=True)
    out = io.StringIO()
    assert not doctor.run(options, plat, env, out)
    report = out.getvalue()
    assert failed(report) == [doctor.MANIFEST_PRESENT]
    assert (f"there is one in {lib64 / inst.MANIFEST_NAME}, but this Firefox build reads only "
            f"{root / 'usr/lib/mozilla/native-messaging-hosts'}") in report
