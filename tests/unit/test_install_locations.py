"""The location table, browser x OS x scope, as the browsers' own sources give it
(docs/install.md cites each entry).

Linux cases run for real: HOME and the system root are temporary folders, install
writes there and uninstall removes it again. macOS and Windows cannot run here:
their cases use a mocked platform (files still go to temporary folders; the
Windows registry is a dict), and assert the exact folder, key and search order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flattr_host import HOST_NAME
from flattr_host.core.errors import InstallError
from flattr_host.tools import install as inst
from tests.support.registry import FakeRegistry

CHROME_KEY = "Software\\Google\\Chrome\\NativeMessagingHosts"
CHROMIUM_KEY = "Software\\Chromium\\NativeMessagingHosts"
EDGE_KEY = "Software\\Microsoft\\Edge\\NativeMessagingHosts"
MOZILLA_KEY = "Software\\Mozilla\\NativeMessagingHosts"

# (browser, OS, scope) -> the folders install writes, in order. "~/" is HOME, "/" the
# system root.
TABLE: dict[tuple[str, str, str], list[str]] = {
    ("chrome", "linux", "user"): ["~/.config/google-chrome/NativeMessagingHosts"],
    ("chromium", "linux", "user"): ["~/.config/chromium/NativeMessagingHosts"],
    ("edge", "linux", "user"): ["~/.config/microsoft-edge/NativeMessagingHosts"],
    ("brave", "linux", "user"): ["~/.config/BraveSoftware/Brave-Browser/NativeMessagingHosts"],
    ("vivaldi", "linux", "user"): ["~/.config/vivaldi/NativeMessagingHosts"],
    ("firefox", "linux", "user"): ["~/.mozilla/native-messaging-hosts"],
    ("chrome", "linux", "system"): ["/etc/opt/chrome/native-messaging-hosts"],
    ("chromium", "linux", "system"): ["/etc/chromium/native-messaging-hosts"],
    ("edge", "linux", "system"): ["/etc/opt/edge/native-messaging-hosts"],
    ("brave", "linux", "system"): ["/etc/opt/chrome/native-messaging-hosts"],
    ("vivaldi", "linux", "system"): ["/etc/chromium/native-messaging-hosts",
                                     "/etc/opt/chrome/native-messaging-hosts"],
    ("firefox", "linux", "system"): ["/usr/lib64/mozilla/native-messaging-hosts",
                                     "/usr/lib/mozilla/native-messaging-hosts"],
    ("chrome", "darwin", "user"): [
        "~/Library/Application Support/Google/Chrome/NativeMessagingHosts"],
    ("chromium", "darwin", "user"): ["~/Library/Application Support/Chromium/NativeMessagingHosts"],
    ("edge", "darwin", "user"): [
        "~/Library/Application Support/Microsoft Edge/NativeMessagingHosts"],
    ("brave", "darwin", "user"): [
        "~/Library/Application Support/Google/Chrome/NativeMessagingHosts"],
    ("vivaldi", "darwin", "user"): ["~/Library/Application Support/Vivaldi/NativeMessagingHosts"],
    ("firefox", "darwin", "user"): ["~/Library/Application Support/Mozilla/NativeMessagingHosts"],
    ("chrome", "darwin", "system"): ["/Library/Google/Chrome/NativeMessagingHosts"],
    ("chromium", "darwin", "system"): [
        "/Library/Application Support/Chromium/NativeMessagingHosts"],
    ("edge", "darwin", "system"): ["/Library/Microsoft/Edge/NativeMessagingHosts"],
    ("brave", "darwin", "system"): ["/Library/Google/Chrome/NativeMessagingHosts"],
    ("vivaldi", "darwin", "system"): ["/Library/Application Support/Chromium/NativeMessagingHosts",
                                      "/Library/Google/Chrome/NativeMessagingHosts"],
    ("firefox", "darwin", "system"): ["/Library/Application Support/Mozilla/NativeMessagingHosts"],
}

# The key install writes, and every key the browser reads in one hive, in order.
WINDOWS: dict[str, tuple[str, list[str]]] = {
    "chrome": (CHROME_KEY, [CHROME_KEY]),
    "chromium": (CHROMIUM_KEY, [CHROMIUM_KEY, CHROME_KEY]),
    "brave": (CHROMIUM_KEY, [CHROMIUM_KEY, CHROME_KEY]),
    "vivaldi": (CHROMIUM_KEY, [CHROMIUM_KEY, CHROME_KEY]),
    "edge": (EDGE_KEY, [EDGE_KEY, CHROMIUM_KEY, CHROME_KEY]),
    "firefox": (MOZILLA_KEY, [MOZILLA_KEY]),
}


def platform(system: str, tmp: Path, env: dict[str, str] | None = None,
             registry: dict[tuple[str, str], str] | None = None) -> inst.Platform:
    root = tmp / "root"
    (root / "usr" / "lib64").mkdir(parents=True, exist_ok=True)
    return inst.Platform(system, tmp / "home", env or {}, which=lambda _c: None,
                         registry=FakeRegistry(registry) if registry is not None else None,
                         root=root, libxul=())


def resolve(plat: inst.Platform, spec: str) -> Path:
    return plat.home / spec[2:] if spec.startswith("~/") else plat.at(spec)


@pytest.mark.parametrize(("browser", "system", "scope"), sorted(TABLE))
def test_install_writes_exactly_the_folders_the_browser_reads(
        tmp_path: Path, browser: str, system: str, scope: str) -> None:
    plat = platform(system, tmp_path)
    want = [resolve(plat, spec) for spec in TABLE[(browser, system, scope)]]
    assert [loc.folder for loc in inst.targets(browser, plat, scope)] == want
    done = inst.install(browser, plat, scope, data_home=tmp_path / "data")
    assert [d.manifest for d in done] == [folder / inst.MANIFEST_NAME for folder in want]
    for item in done:
        body = json.loads(item.manifest.read_text())
        assert body["name"] == HOST_NAME and Path(body["path"]) == item.launcher
        assert item.launcher.is_file()
    # The browser reads at least one of them (Firefox: the one its build reads).
    order = [loc.folder for loc in inst.search_order(browser, plat)]
    assert any(folder in order for folder in want)
    removed = inst.uninstall(browser, plat, scope)
    assert sorted(removed) == sorted(str(p) for d in done for p in (d.manifest, d.launcher))
    assert not any(folder.joinpath(inst.MANIFEST_NAME).exists() for folder in want)


def test_firefox_system_without_usr_lib64_writes_only_usr_lib(tmp_path: Path) -> None:
    plat = platform("linux", tmp_path)
    (plat.root / "usr" / "lib64").rmdir()
    assert [loc.folder for loc in inst.targets("firefox", plat, "system")] == [
        plat.at("/usr/lib/mozilla/native-messaging-hosts")]


@pytest.mark.parametrize("browser", sorted(WINDOWS))
@pytest.mark.parametrize(("scope", "hive"), [("user", inst.HKCU), ("system", inst.HKLM)])
def test_windows_key_and_search_order(tmp_path: Path, browser: str, scope: str,
                                      hive: str) -> None:
    values: dict[tuple[str, str], str] = {}
    plat = platform("win32", tmp_path, {"LOCALAPPDATA": str(tmp_path / "L"),
                                        "ProgramData": str(tmp_path / "P")}, values)
    written, reads = WINDOWS[browser]
    [done] = inst.install(browser, plat, scope, data_home=tmp_path / "d")
    assert values == {(hive, f"{written}\\{HOST_NAME}"): str(done.manifest)}
    # Hive first, then key: every key in HKCU, then every key in HKLM.
    assert [loc.registry for loc in inst.search_order(browser, plat)] == [
        (h, f"{key}\\{HOST_NAME}") for h in (inst.HKCU, inst.HKLM) for key in reads]


def test_windows_sharing_names_every_browser_reading_the_key(tmp_path: Path) -> None:
    plat = platform("win32", tmp_path, {"LOCALAPPDATA": str(tmp_path / "L")}, {})
    assert sorted(inst.sharing(inst.target("chromium", plat), plat)) == ["brave", "edge",
                                                                          "vivaldi"]
    assert sorted(inst.sharing(inst.target("chrome", plat), plat)) == [
        "brave", "chromium", "edge", "vivaldi"]
    assert inst.sharing(inst.target("edge", plat), plat) == []


def test_sharing_reports_shared_folders(tmp_path: Path) -> None:
    mac = platform("darwin", tmp_path)
    assert inst.sharing(inst.target("brave", mac), mac) == ["chrome"]
    assert inst.sharing(inst.target("chrome", mac), mac) == ["brave"]
    assert inst.sharing(inst.target("chrome", mac, "system"), mac) == ["brave", "vivaldi"]
    linux = platform("linux", tmp_path)
    assert inst.sharing(inst.target("brave", linux, "system"), linux) == ["chrome", "vivaldi"]
    assert inst.sharing(inst.target("brave", linux), linux) == []


def test_install_writes_a_shared_folder_once(tmp_path: Path) -> None:
    plat = platform("darwin", tmp_path)
    done = inst.install("brave", plat, data_home=tmp_path / "d")
    assert [d.manifest.parent for d in done] == [
        plat.home / "Library/Application Support/Google/Chrome/NativeMessagingHosts"]


# -- environment: CHROME_CONFIG_HOME, XDG_CONFIG_HOME ------------------------------------

CONFIG_NAMES = {"chrome": "google-chrome", "chromium": "chromium", "edge": "microsoft-edge",
                "vivaldi": "vivaldi", "brave": "BraveSoftware/Brave-Browser"}


@pytest.mark.parametrize("browser", sorted(CONFIG_NAMES))
def test_linux_user_folder_follows_the_config_home_variables(tmp_path: Path,
                                                             browser: str) -> None:
    chrome_home, xdg = tmp_path / "chrome-config", tmp_path / "xdg"
    both = platform("linux", tmp_path, {"CHROME_CONFIG_HOME": str(chrome_home),
                                        "XDG_CONFIG_HOME": str(xdg)})
    only_xdg = platform("linux", tmp_path, {"XDG_CONFIG_HOME": str(xdg)})
    name = CONFIG_NAMES[browser]
    # Brave reads only $XDG_CONFIG_HOME (brave-core chrome_paths_linux.cc).
    first = xdg if browser == "brave" else chrome_home
    [done] = inst.install(browser, both, data_home=tmp_path / "d")
    assert done.manifest == first / name / "NativeMessagingHosts" / inst.MANIFEST_NAME
    assert inst.search_order(browser, both)[0].folder == first / name / "NativeMessagingHosts"
    assert inst.target(browser, only_xdg).folder == xdg / name / "NativeMessagingHosts"
    assert inst.uninstall(browser, both) == [str(done.manifest), str(done.launcher)]


def test_firefox_ignores_the_config_home_variables(tmp_path: Path) -> None:
    plat = platform("linux", tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "x"),
                                        "CHROME_CONFIG_HOME": str(tmp_path / "c")})
    assert inst.target("firefox", plat).folder == plat.home / ".mozilla/native-messaging-hosts"


def test_detection_follows_the_config_home(tmp_path: Path) -> None:
    plat = platform("linux", tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "x")})
    (tmp_path / "x" / "vivaldi").mkdir(parents=True)
    assert inst.detect(plat) == ["vivaldi"]


# -- --user-data-dir ------------------------------------------------------------------------

@pytest.mark.parametrize("system", ["linux", "darwin"])
@pytest.mark.parametrize("browser", ["chrome", "chromium", "edge"])
def test_user_data_dir_holds_the_manifest(tmp_path: Path, system: str, browser: str) -> None:
    plat = platform(system, tmp_path)
    profile = tmp_path / "profile"
    [done] = inst.install(browser, plat, user_data_dir=profile, data_home=tmp_path / "d")
    assert done.manifest == profile / "NativeMessagingHosts" / inst.MANIFEST_NAME
    assert inst.search_order(browser, plat, profile)[0].folder == profile / "NativeMessagingHosts"


@pytest.mark.parametrize(("browser", "message"), [
    ("brave", "fixed folder"), ("vivaldi", "Chrome's user folder"), ("firefox", "--home")])
def test_user_data_dir_is_refused_where_the_browser_ignores_it(tmp_path: Path, browser: str,
                                                               message: str) -> None:
    with pytest.raises(InstallError, match=message):
        inst.install(browser, platform("linux", tmp_path), user_data_dir=tmp_path / "p")


@pytest.mark.parametrize("browser", sorted(WINDOWS))
def test_user_data_dir_is_refused_on_windows(tmp_path: Path, browser: str) -> None:
    plat = platform("win32", tmp_path, {"LOCALAPPDATA": str(tmp_path / "L")}, {})
    with pytest.raises(InstallError, match=r"does not work on Windows: .*registry"):
        inst.install(browser, plat, user_data_dir=tmp_path / "p")


# -- Firefox's one system folder ------------------------------------------------------------

def _libxul(plat: inst.Platform, text: bytes) -> inst.Platform:
    path = plat.at("/usr/lib/firefox/libxul.so")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The string straddles a 1 MiB read boundary in the lib64 case.
    path.write_bytes(b"\0" * ((1 << 20) - 7) + text + b"\0" * 100)
    return inst.Platform(plat.system, plat.home, plat.env, which=plat.which, root=plat.root,
                         libxul=("/usr/lib/firefox/libxul.so",))


@pytest.mark.parametrize(("text", "used"), [
    (b"/usr/lib64/mozilla", "/usr/lib64/mozilla/native-messaging-hosts"),
    (b"/usr/lib/mozilla", "/usr/lib/mozilla/native-messaging-hosts")])
def test_firefox_search_order_has_the_one_system_folder_its_build_reads(
        tmp_path: Path, text: bytes, used: str) -> None:
    plat = _libxul(platform("linux", tmp_path), text)
    assert inst.firefox_system_folder(plat) == plat.at(used)
    assert [loc.folder for loc in inst.search_order("firefox", plat)] == [
        plat.home / ".mozilla/native-messaging-hosts", plat.at(used)]


def test_firefox_system_folder_unknown_without_libxul(tmp_path: Path) -> None:
    plat = platform("linux", tmp_path)
    assert inst.firefox_system_folder(plat) is None
    assert inst.search_order("firefox", plat)[-1].folder == plat.at(
        "/usr/lib/mozilla/native-messaging-hosts")


def test_this_machines_firefox_is_read_correctly() -> None:
    """Debian's firefox-esr reads /usr/lib/mozilla although /usr/lib64 exists."""
    real = inst.current_platform()
    libxul = [p for p in inst.FIREFOX_LIBXUL if Path(p).exists()]
    if not libxul:
        pytest.skip("no Firefox installed on this machine")
    with open(libxul[0], "rb") as handle:
        lib64 = b"/usr/lib64/mozilla" in handle.read()
    expected = "/usr/lib64/mozilla" if lib64 else "/usr/lib/mozilla"
    assert inst.firefox_system_folder(real) == Path(expected) / "native-messaging-hosts"


# -- Flatpak Firefox ---------------------------------------------------------------------

def test_flatpak_firefox_also_gets_the_hosts_mozilla_folder(tmp_path: Path) -> None:
    plat = platform("linux", tmp_path)
    (plat.home / ".var/app/org.mozilla.firefox").mkdir(parents=True)
    done = inst.install("all", plat, data_home=tmp_path / "d")
    assert [d.manifest.parent for d in done] == [
        plat.home / ".mozilla/native-messaging-hosts",
        plat.home / ".var/app/org.mozilla.firefox/.mozilla/native-messaging-hosts"]
