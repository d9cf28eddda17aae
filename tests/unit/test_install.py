"""Installer: every browser's folder on Linux, macOS and Windows, Flatpak/Snap
advice, idempotence, and an uninstall that removes only what install wrote and
says what it leaves. The per-browser location table is in test_install_locations.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flattr_host import HOST_NAME
from flattr_host.core.config import CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID
from flattr_host.core.errors import InstallError
from flattr_host.tools import install as inst
from tests.support.registry import FakeRegistry

OTHER_ID = "abcdefghijklmnopabcdefghijklmnop"


def linux(home: Path, commands: tuple[str, ...] = (), **kwargs: object) -> inst.Platform:
    """Linux with HOME and the system root both inside the test's folder."""
    kwargs.setdefault("root", home / "root")
    return inst.Platform("linux", home, {}, which=lambda c: f"/usr/bin/{c}" if c in commands
                         else None, **kwargs)  # type: ignore[arg-type]


def only_under(root: Path) -> object:
    """An `exists` that sees nothing outside ``root`` (no /snap, /var/lib/flatpak here)."""
    return lambda p: str(p).startswith(str(root)) and os.path.exists(p)


LINUX_USER = {
    "chrome": ".config/google-chrome/NativeMessagingHosts",
    "chromium": ".config/chromium/NativeMessagingHosts",
    "edge": ".config/microsoft-edge/NativeMessagingHosts",
    "brave": ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
    "vivaldi": ".config/vivaldi/NativeMessagingHosts",
    "firefox": ".mozilla/native-messaging-hosts",
}


@pytest.mark.parametrize("browser", sorted(LINUX_USER))
def test_linux_user_install_writes_the_folder_the_browser_reads(tmp_path: Path,
                                                                 browser: str) -> None:
    plat = linux(tmp_path, exists=only_under(tmp_path))
    [done] = inst.install(browser, plat, data_home=tmp_path / "data")
    assert done.manifest == tmp_path / LINUX_USER[browser] / f"{HOST_NAME}.json"
    body = json.loads(done.manifest.read_text())
    assert body["name"] == HOST_NAME and body["type"] == "stdio"
    assert body["path"] == str(done.launcher) and Path(body["path"]).is_absolute()
    assert os.access(done.launcher, os.X_OK)
    if browser == "firefox":
        assert body["allowed_extensions"] == [FIREFOX_EXTENSION_ID]
        assert "allowed_origins" not in body
    else:
        assert body["allowed_origins"] == [f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"]
    launcher = done.launcher.read_text()
    assert launcher.startswith("#!/bin/sh\n") and inst.LAUNCHER_MARK in launcher
    assert sys.executable in launcher and str(tmp_path / "data") in launcher


def test_manifest_comes_from_the_template(tmp_path: Path) -> None:
    from importlib.resources import files

    template = json.loads(files("flattr_host").joinpath("templates", "chromium.json")
                          .read_text(encoding="utf-8"))
    [done] = inst.install("chrome", linux(tmp_path), data_home=tmp_path / "d")
    body = json.loads(done.manifest.read_text())
    assert list(body) == list(template)
    assert body["description"] == template["description"]


def test_install_is_idempotent(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    [first] = inst.install("chromium", plat, data_home=tmp_path / "d")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (first.manifest, first.launcher)}
    [again] = inst.install("chromium", plat, data_home=tmp_path / "d")
    assert first.changed and not again.changed
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before


def test_uninstall_removes_only_what_install_wrote(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    [done] = inst.install("chromium", plat, data_home=tmp_path / "d")
    folder = done.manifest.parent
    foreign = folder / "org.other.host.json"
    foreign.write_text('{"name": "org.other.host"}')
    removed = inst.uninstall("chromium", plat)
    assert sorted(removed) == sorted([str(done.manifest), str(done.launcher)])
    assert foreign.exists() and folder.exists()
    assert inst.uninstall("chromium", plat) == []


def test_uninstall_keeps_a_manifest_someone_else_rewrote(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    [done] = inst.install("chrome", plat, data_home=tmp_path / "d")
    body = json.loads(done.manifest.read_text())
    body["path"] = "/opt/other/host"
    done.manifest.write_text(json.dumps(body))
    report = inst.uninstall_report("chrome", plat)
    assert report.removed == [str(done.launcher)]
    assert done.manifest.exists()
    [(path, why)] = report.left
    assert path == str(done.manifest) and "/opt/other/host" in why


def test_uninstall_keeps_a_launcher_without_our_mark(tmp_path: Path) -> None:
    folder = tmp_path / LINUX_USER["vivaldi"]
    folder.mkdir(parents=True)
    (folder / inst.LAUNCHER_NAME).write_text("#!/bin/sh\necho mine\n")
    (folder / inst.MANIFEST_NAME).write_text(json.dumps({"name": HOST_NAME,
                                                         "path": str(folder / inst.LAUNCHER_NAME)}))
    report = inst.uninstall_report("vivaldi", linux(tmp_path))
    assert report.removed == []
    assert (folder / inst.LAUNCHER_NAME).exists() and (folder / inst.MANIFEST_NAME).exists()
    left = dict(report.left)
    assert "mark" in left[str(folder / inst.MANIFEST_NAME)]
    assert "still points at it" in left[str(folder / inst.LAUNCHER_NAME)]


def test_user_data_dir_errors(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    profile = tmp_path / "profile"
    location = inst.target("chromium", plat, "user", profile)
    assert location.folder == profile / "NativeMessagingHosts" and location.scope == "profile"
    with pytest.raises(InstallError, match="--home"):
        inst.target("firefox", plat, "user", profile)
    with pytest.raises(InstallError, match="do not go together"):
        inst.target("chrome", plat, "system", profile)
    with pytest.raises(InstallError, match=r"unknown browser 'safari'.*--manifest-dir"):
        inst.target("safari", plat)


def test_system_launcher_does_not_pin_a_users_data_directory(tmp_path: Path) -> None:
    location = inst.Location("chromium", "system", tmp_path / "sys")
    done = inst.install_at(location, linux(tmp_path), None, tmp_path / "data")
    assert "FLATTR_HOST_HOME" not in done.launcher.read_text()


def test_extension_ids_go_to_the_right_family_and_the_host_allows_them(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    ids = [OTHER_ID, "other@example.org"]
    [chrome] = inst.install("chrome", plat, extension_ids=ids, data_home=tmp_path / "d")
    [firefox] = inst.install("firefox", plat, extension_ids=ids, data_home=tmp_path / "d")
    assert json.loads(chrome.manifest.read_text())["allowed_origins"] == [
        f"chrome-extension://{OTHER_ID}/"]
    assert json.loads(firefox.manifest.read_text())["allowed_extensions"] == ["other@example.org"]
    text = chrome.launcher.read_text()
    assert (f"FLATTR_ALLOWED_EXTENSIONS={OTHER_ID},other@example.org,{CHROMIUM_EXTENSION_ID},"
            f"{FIREFOX_EXTENSION_ID}") in text


def test_launcher_fixes_flattr_settings_in_force_at_install(tmp_path: Path) -> None:
    plat = inst.Platform("linux", tmp_path, {"FLATTR_API_BASE": "https://127.0.0.1:9/x y",
                                             "UNRELATED": "1"})
    [done] = inst.install("chromium", plat, data_home=tmp_path / "d")
    text = done.launcher.read_text()
    assert "FLATTR_API_BASE='https://127.0.0.1:9/x y'" in text and "UNRELATED" not in text


def test_launcher_runs_without_path_like_a_dock_launch(tmp_path: Path) -> None:
    """A host started from the macOS Dock or a desktop launcher gets no PATH at all."""
    [done] = inst.install("chromium", linux(tmp_path), data_home=tmp_path / "data")
    frame = json.dumps({"id": 1, "type": "hello", "extension": {
        "id": CHROMIUM_EXTENSION_ID, "version": "1", "build": "t"}}).encode()
    proc = subprocess.run(
        [str(done.launcher), f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"],
        input=len(frame).to_bytes(4, sys.byteorder) + frame, capture_output=True,
        cwd=done.launcher.parent, env={}, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout[4:4 + int.from_bytes(proc.stdout[:4], sys.byteorder)])
    assert reply["ok"] is True and reply["result"]["host"]["protocol"] == 1
    assert (tmp_path / "data" / "host.db").exists()


# -- macOS (mocked) ----------------------------------------------------------------------

def test_macos_detection(tmp_path: Path) -> None:
    seen = {Path("/Applications/Google Chrome.app"), Path("/Applications/Firefox.app")}
    plat = inst.Platform("darwin", tmp_path, {}, exists=lambda p: p in seen)
    assert inst.detect(plat) == ["chrome", "firefox"]


# -- Windows (mocked) --------------------------------------------------------------------

def windows(tmp_path: Path, registry: FakeRegistry) -> inst.Platform:
    env = {"LOCALAPPDATA": str(tmp_path / "Local"), "APPDATA": str(tmp_path / "Roaming"),
           "ProgramData": str(tmp_path / "ProgramData")}
    return inst.Platform("win32", tmp_path, env, registry=registry)


WIN_KEYS = {
    "chrome": "Software\\Google\\Chrome\\NativeMessagingHosts",
    "chromium": "Software\\Chromium\\NativeMessagingHosts",
    "edge": "Software\\Microsoft\\Edge\\NativeMessagingHosts",
    "brave": "Software\\Chromium\\NativeMessagingHosts",
    "vivaldi": "Software\\Chromium\\NativeMessagingHosts",
    "firefox": "Software\\Mozilla\\NativeMessagingHosts",
}


@pytest.mark.parametrize("browser", sorted(WIN_KEYS))
@pytest.mark.parametrize("scope,hive", [("user", inst.HKCU), ("system", inst.HKLM)])
def test_windows_registry_key_names_the_manifest(tmp_path: Path, browser: str, scope: str,
                                                 hive: str) -> None:
    registry = FakeRegistry()
    plat = windows(tmp_path, registry)
    [done] = inst.install(browser, plat, scope, data_home=tmp_path / "data")
    key = f"{WIN_KEYS[browser]}\\{HOST_NAME}"
    assert registry.values == {(hive, key): str(done.manifest)}
    base = tmp_path / ("ProgramData" if scope == "system" else "Local")
    assert done.manifest.is_relative_to(base / "flattr-companion" / "native-messaging")
    assert done.launcher.name == f"{inst.LAUNCHER_NAME}.cmd"
    text = done.launcher.read_bytes().decode()
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert f'"{sys.executable}" -u -c' in text and text.rstrip().endswith("%*")
    assert ("FLATTR_HOST_HOME" in text) == (scope == "user")
    [again] = inst.install(browser, plat, scope, data_home=tmp_path / "data")
    assert not again.changed
    assert inst.uninstall(browser, plat, scope) == [
        str(done.manifest), str(done.launcher), f"{hive}\\{key}"]
    assert registry.values == {}


def test_windows_cmd_escapes_percent_and_refuses_quotes(tmp_path: Path) -> None:
    text = inst.launcher_script("C:\\Py\\python.exe", {"FLATTR_HOST_HOME": "C:\\100%\\x"},
                                windows=True)
    assert 'if not defined FLATTR_HOST_HOME set "FLATTR_HOST_HOME=C:\\100%%\\x"' in text
    with pytest.raises(InstallError, match="quote"):
        inst.launcher_script('C:\\"x"\\python.exe', {}, windows=True)
    with pytest.raises(InstallError, match="control character"):
        inst.launcher_script("C:\\Py\\python.exe", {"FLATTR_API_BASE": "x\r\ncalc.exe"},
                             windows=True)


def test_windows_uninstall_keeps_a_key_pointing_elsewhere(tmp_path: Path) -> None:
    registry = FakeRegistry()
    plat = windows(tmp_path, registry)
    inst.install("chrome", plat, data_home=tmp_path / "d")
    key = (inst.HKCU, f"{WIN_KEYS['chrome']}\\{HOST_NAME}")
    registry.values[key] = "C:\\someone\\else.json"
    removed = inst.uninstall("chrome", plat)
    assert f"{key[0]}\\{key[1]}" not in removed and registry.values[key] == "C:\\someone\\else.json"


def test_windows_detection_uses_profile_folders(tmp_path: Path) -> None:
    plat = windows(tmp_path, FakeRegistry())
    (tmp_path / "Local" / "Microsoft" / "Edge" / "User Data").mkdir(parents=True)
    (tmp_path / "Roaming" / "Mozilla" / "Firefox").mkdir(parents=True)
    assert inst.detect(plat) == ["edge", "firefox"]


# -- detection, --browser all, Flatpak and Snap ------------------------------------------

def test_browser_all_installs_every_browser_found(tmp_path: Path) -> None:
    (tmp_path / ".config" / "vivaldi").mkdir(parents=True)
    plat = linux(tmp_path, ("chromium", "firefox-esr"), exists=only_under(tmp_path))
    done = inst.install("all", plat, data_home=tmp_path / "d")
    assert [d.location.browser for d in done] == ["chromium", "vivaldi", "firefox"]
    assert inst.resolve_browsers("chrome", plat) == ["chrome"]


def test_browser_all_with_nothing_found_says_so(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="no supported browser found"):
        inst.install("all", linux(tmp_path, exists=only_under(tmp_path)))


def test_flatpak_browser_gets_a_wrapper_and_the_exact_command(tmp_path: Path) -> None:
    app = "org.chromium.Chromium"
    (tmp_path / ".var" / "app" / app).mkdir(parents=True)
    plat = linux(tmp_path, exists=only_under(tmp_path))
    done = inst.install("all", plat, data_home=tmp_path / "d")
    [box] = done
    assert box.location.flatpak == app
    assert box.manifest == (tmp_path / ".var/app" / app / "config/chromium/NativeMessagingHosts"
                            / inst.MANIFEST_NAME)
    wrapper = box.launcher.read_text()
    real = box.launcher.parent / inst.HOST_LAUNCHER_NAME
    assert f"exec flatpak-spawn --host {real}" in wrapper
    assert sys.executable in real.read_text() and os.access(real, os.X_OK)
    assert any(f"flatpak override --user --talk-name=org.freedesktop.Flatpak {app}" in n
               for n in box.notes)
    # Once the user granted it, the advice changes; uninstall removes all three files.
    overrides = tmp_path / ".local/share/flatpak/overrides"
    overrides.mkdir(parents=True)
    (overrides / app).write_text("[Session Bus Policy]\norg.freedesktop.Flatpak=talk\n")
    assert inst.flatpak_override_granted(plat, app)
    assert sorted(inst.uninstall("chromium", plat)) == sorted(
        [str(box.manifest), str(box.launcher), str(real)])


def test_snap_chromium_is_explained_not_installed(tmp_path: Path) -> None:
    (tmp_path / "snap" / "chromium").mkdir(parents=True)
    plat = linux(tmp_path, ("chromium",), exists=only_under(tmp_path))
    [done] = inst.install("chromium", plat, data_home=tmp_path / "d")
    assert done.manifest.exists()
    assert any("confined" in n and "cannot start programs outside the snap" in n
               for n in done.notes)
    (tmp_path / "snap" / "firefox").mkdir(parents=True)
    [ff] = [s for s in inst.sandboxes(plat) if s.browser == "firefox"]
    assert ff.location is None and "portal" in ff.advice


# -- the command ------------------------------------------------------------------------

def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flattr_host", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)


def test_cli_firefox_with_home(tmp_path: Path) -> None:
    env = {"FLATTR_HOST_HOME": str(tmp_path / "data")}
    done = run_cli("install", "--browser", "firefox", "--home", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / ".mozilla/native-messaging-hosts" / inst.MANIFEST_NAME
    assert json.loads(manifest.read_text())["allowed_extensions"] == [FIREFOX_EXTENSION_ID]
    assert f"installed firefox  {manifest}" in done.stdout
    again = run_cli("install", "--browser", "firefox", "--home", str(tmp_path), env=env)
    assert "unchanged" in again.stdout
    gone = run_cli("uninstall", "--browser", "firefox", "--home", str(tmp_path), env=env)
    assert f"removed {manifest}" in gone.stdout and not manifest.exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    done = run_cli("install", "--browser", "chrome", "--system", "--user-data-dir",
                   str(tmp_path), env={"FLATTR_HOST_HOME": str(tmp_path / "d")})
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "do not go together" in done.stderr


def test_system_folder_that_cannot_be_written_says_what_to_do(tmp_path: Path) -> None:
    """Without root a system folder refuses the write; a file in the way does so even
    for root (the tests may run as root)."""
    blocker = tmp_path / "etc"
    blocker.write_text("not a folder")
    location = inst.Location("chromium", "system", blocker / "chromium" / "native-messaging-hosts")
    with pytest.raises(InstallError, match=r"cannot write to .*run with sudo, or use --user"):
        inst.install_at(location, linux(tmp_path), None, tmp_path / "d")


def test_manifest_and_launcher_modes(tmp_path: Path) -> None:
    [done] = inst.install("edge", linux(tmp_path), data_home=tmp_path / "d")
    assert stat.S_IMODE(done.manifest.stat().st_mode) == 0o644
    assert stat.S_IMODE(done.launcher.stat().st_mode) == 0o755


# -- uninstall: what it leaves, and why -------------------------------------------------

def test_uninstall_reports_our_system_manifest_it_cannot_remove_without_system(
        tmp_path: Path) -> None:
    plat = linux(tmp_path)
    [user] = inst.install("chromium", plat, data_home=tmp_path / "d")
    [system] = inst.install("chromium", plat, "system", data_home=tmp_path / "d")
    report = inst.uninstall_report("chromium", plat)
    assert sorted(report.removed) == sorted([str(user.manifest), str(user.launcher)])
    [(path, why)] = report.left
    assert path == str(system.manifest) and "--system" in why
    assert system.manifest.exists()
    assert sorted(inst.uninstall("chromium", plat, "system")) == sorted(
        [str(system.manifest), str(system.launcher)])


def test_uninstall_removes_a_dangling_manifest_install_wrote(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    [done] = inst.install("edge", plat, data_home=tmp_path / "d")
    done.launcher.unlink()
    assert inst.uninstall_report("edge", plat).removed == [str(done.manifest)]


def test_uninstall_leaves_another_programs_file_and_garbage_with_reasons(tmp_path: Path) -> None:
    plat = linux(tmp_path)
    [done] = inst.install("chrome", plat, data_home=tmp_path / "d")
    done.manifest.write_text('{"name": "com.other.host", "path": "/x"}')
    report = inst.uninstall_report("chrome", plat)
    assert dict(report.left)[str(done.manifest)] == ("its name is not 'com.flattr.companion': "
                                                     "another program's file")
    assert report.removed == [str(done.launcher)]  # ours; that manifest does not use it
    done.manifest.write_text("{broken")
    assert "not valid JSON" in dict(inst.uninstall_report("chrome", plat).left)[
        str(done.manifest)]


def test_windows_uninstall_reports_a_key_naming_another_manifest(tmp_path: Path) -> None:
    registry = FakeRegistry()
    plat = windows(tmp_path, registry)
    inst.install("chrome", plat, data_home=tmp_path / "d")
    key = (inst.HKCU, f"{WIN_KEYS['chrome']}\\{HOST_NAME}")
    registry.values[key] = f"C:\\elsewhere\\{inst.MANIFEST_NAME}"
    report = inst.uninstall_report("chrome", plat)
    assert registry.values[key] == f"C:\\elsewhere\\{inst.MANIFEST_NAME}"
    assert "not the manifest flattr-host install writes" in dict(report.left)[
        f"{key[0]}\\{key[1]}"]


def test_cli_uninstall_says_what_it_leaves_and_where_the_data_stays(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"FLATTR_HOST_HOME": str(data)}
    profile = tmp_path / "profile"
    assert run_cli("install", "--browser", "chromium", "--user-data-dir", str(profile),
                   env=env).returncode == 0
    manifest = profile / "NativeMessagingHosts" / inst.MANIFEST_NAME
    body = json.loads(manifest.read_text())
    body["path"] = "/opt/dev/host"
    manifest.write_text(json.dumps(body))
    done = run_cli("uninstall", "--browser", "chromium", "--user-data-dir", str(profile),
                   env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"removed {profile / 'NativeMessagingHosts' / inst.LAUNCHER_NAME}" in lines
    [left] = [line for line in lines if line.startswith("left")]
    assert left.startswith(f"left    {manifest}: its path was changed to /opt/dev/host")
    assert lines[-1] == (f"data directory does not exist: {data} (`flattr-host uninstall "
                         "--purge` removes it)")


def test_purge_removes_the_hosts_files_and_keeps_anything_else(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    for name in ("host.db", "host.db-wal", "token.key", "config.json", "logs/host.log",
                 "host.db.broken-1"):
        (data / name).write_text("x")
    (data / "my-notes.txt").write_text("keep me")
    done = run_cli("uninstall", "--browser", "chromium", "--user-data-dir",
                   str(tmp_path / "p"), "--purge", env={"FLATTR_HOST_HOME": str(data)})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"purging data directory {data}:" in out
    assert "  token.key: the key the access token is encrypted with" in out
    assert "  host.db: the store: token ciphertext, subscription state, queued flattrs" in out
    assert "  logs: the host's logs" in out
    assert "  my-notes.txt: not created by the host (kept)" in out
    assert f"left    {data / 'my-notes.txt'}: not created by the host" in out
    assert sorted(p.name for p in data.iterdir()) == ["my-notes.txt"]
    (data / "my-notes.txt").unlink()
    again = run_cli("uninstall", "--browser", "chromium", "--user-data-dir",
                    str(tmp_path / "p"), "--purge", env={"FLATTR_HOST_HOME": str(data)})
    assert f"removed {data}" in again.stdout and not data.exists()


def test_family_needs_manifest_dir_and_windows_refuses_manifest_dir(tmp_path: Path) -> None:
    done = run_cli("install", "--family", "firefox", env={"FLATTR_HOST_HOME": str(tmp_path)})
    assert done.returncode == 1 and "--family goes with --manifest-dir" in done.stderr
    both = run_cli("install", "--manifest-dir", str(tmp_path), "--system",
                   env={"FLATTR_HOST_HOME": str(tmp_path)})
    assert both.returncode == 1 and "does not go with" in both.stderr
    with pytest.raises(InstallError, match="registry"):
        inst.custom_location(tmp_path, "chromium", windows(tmp_path, FakeRegistry()))
    with pytest.raises(InstallError, match="unknown family"):
        inst.custom_location(tmp_path, "webkit", linux(tmp_path))


def test_manifest_dir_family_follows_browser(tmp_path: Path) -> None:
    folder = tmp_path / "librewolf"
    done = run_cli("install", "--manifest-dir", str(folder), "--browser", "firefox",
                   env={"FLATTR_HOST_HOME": str(tmp_path / "d")})
    assert done.returncode == 0, done.stderr
    assert "allowed_extensions" in json.loads((folder / inst.MANIFEST_NAME).read_text())


def test_cli_prints_shared_folders(tmp_path: Path) -> None:
    done = run_cli("install", "--browser", "vivaldi", "--home", str(tmp_path),
                   env={"FLATTR_HOST_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": "",
                        "CHROME_CONFIG_HOME": ""})
    assert done.returncode == 0, done.stderr
    assert f"installed vivaldi  {tmp_path}/.config/vivaldi/NativeMessagingHosts" in done.stdout


# -- extension, completion ----------------------------------------------------------------

def test_extension_command_names_a_loadable_folder(tmp_path: Path) -> None:
    done = run_cli("extension", env={})
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3 and (folder / manifest["background"][
        "service_worker"]).is_file()


def test_bash_completion_completes_commands_options_and_values(tmp_path: Path) -> None:
    script = tmp_path / "flattr-host.bash"
    done = run_cli("completion", "bash", env={})
    assert done.returncode == 0, done.stderr
    script.write_text(done.stdout)

    def complete(*words: str) -> list[str]:
        quoted = " ".join(f"'{w}'" for w in ("flattr-host", *words))
        probe = (f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
                 "_flattr_host; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return sorted(line for line in out.stdout.splitlines() if line)

    assert complete("ins") == ["inspect", "install"]
    assert complete("install", "--browser", "") == sorted([*inst.BROWSERS, "all"])
    assert complete("install", "--fam") == ["--family"]
    assert complete("install", "--family", "f") == ["firefox"]
    assert complete("uninstall", "--pu") == ["--purge"]
    assert complete("queue", "") == ["--help", "-h", "clear", "list", "retry-failed"]
    assert complete("queue", "list", "--status", "f") == ["failed"]
    assert complete("completion", "") == ["--help", "-h", "bash", "fish", "zsh"]
    (tmp_path / "profile-dir").mkdir()
    assert complete("install", "--user-data-dir", str(tmp_path / "prof")) == [
        str(tmp_path / "profile-dir")]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion(shell: str, tmp_path: Path) -> None:
    done = run_cli("completion", shell, env={})
    assert done.returncode == 0, done.stderr
    if shell == "zsh":
        assert done.stdout.startswith("#compdef flattr-host\n")
        assert "complete -o filenames -F _flattr_host flattr-host" in done.stdout
        # zsh is not installed here; the bash part is checked by bash itself.
        syntax = subprocess.run(["bash", "-n"], input=done.stdout.split("\n", 3)[3], text=True,
                                capture_output=True)
        assert syntax.returncode == 0, syntax.stderr
    else:
        assert "complete -c flattr-host -n __fish_use_subcommand -a install" in done.stdout
        assert ("complete -c flattr-host -n '__fish_seen_subcommand_from install; true' -l "
                "browser -x -a 'chrome chromium edge brave vivaldi firefox all'") in done.stdout
        assert "-l user-data-dir -r -F" in done.stdout


@pytest.mark.parametrize("browser", sorted(inst.BROWSERS))
def test_cli_accepts_every_browser_the_popup_may_name(tmp_path: Path, browser: str) -> None:
    """The popup's fix command names one of these (or `all`); each must work as given."""
    env = {"FLATTR_HOST_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": "",
           "CHROME_CONFIG_HOME": ""}
    done = run_cli("install", "--browser", browser, "--home", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("installed")]
    manifest = Path(line.split()[-1])
    assert manifest.is_relative_to(tmp_path) and manifest.name == inst.MANIFEST_NAME
    assert run_cli("doctor", "--browser", browser, "--home", str(tmp_path), "--skip-api",
                   "--timeout", "30", env=env).returncode == 0
