"""Browser host manifests: where each browser looks, writing and removing them.

Every supported browser reads a host manifest named ``com.flattr.companion.json``
from its own folders (Linux, macOS) or from the file a registry key names
(Windows). The table below is taken from the browsers' own source and docs; each
entry cites its source, and docs/install.md shows the whole table. Search order
matters: a browser uses the *first* manifest it finds (Edge on Windows also reads
Chromium's and Chrome's keys, Brave on macOS reads Chrome's folders), so every
Chromium-family manifest we write lists the same extension ids.

The manifest's ``path`` points at a launcher written beside it, filled in from the
``launcher.*`` templates (package data, ``flattr_host/templates``): it runs this
Python by absolute path (a browser started from the macOS Dock or a desktop
launcher has no shell PATH) and fixes the data directory and the ``FLATTR_*``
settings in force at install time.

Sandboxed browsers: a Flatpak browser reads manifests inside its sandbox
(``~/.var/app/<id>/...``) and cannot see the host's Python; we install a second
launcher there that runs the real one through ``flatpak-spawn --host``, which needs
a permission only the user should grant (we print the exact command). Snap
Chromium/Brave cannot start programs outside the snap at all; Snap and Flatpak
Firefox start hosts through the desktop portal from the normal user folder.

Idempotent: re-running writes identical files. Uninstall removes a launcher only
if it carries our mark, a manifest only if it points at such a launcher, a
registry key only if it names our manifest, and says in one line why it leaves
anything else of ours behind.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from flattr_host import HOST_NAME, __version__
from flattr_host.core.config import CHROMIUM_EXTENSION_ID, ENV, FIREFOX_EXTENSION_ID
from flattr_host.core.errors import InstallError

MANIFEST_NAME = f"{HOST_NAME}.json"
LAUNCHER_NAME = f"{HOST_NAME}-launcher"
HOST_LAUNCHER_NAME = f"{HOST_NAME}-host-launcher"  # the real one, beside a Flatpak wrapper
LAUNCHER_MARK = "Written by `flattr-host install`"
FAMILIES = ("chromium", "firefox")
CUSTOM = "custom"  # the browser name of a --manifest-dir location

HKCU = "HKEY_CURRENT_USER"
HKLM = "HKEY_LOCAL_MACHINE"
FLATPAK_TALK = "org.freedesktop.Flatpak"

_CHROME_KEY = "Software\\Google\\Chrome\\NativeMessagingHosts"
_CHROMIUM_KEY = "Software\\Chromium\\NativeMessagingHosts"
_EDGE_KEY = "Software\\Microsoft\\Edge\\NativeMessagingHosts"
_MOZILLA_KEY = "Software\\Mozilla\\NativeMessagingHosts"

_CHROME_MAC_USER = "Library/Application Support/Google/Chrome/NativeMessagingHosts"
_CHROME_MAC_SYSTEM = "/Library/Google/Chrome/NativeMessagingHosts"
_CHROMIUM_MAC_SYSTEM = "/Library/Application Support/Chromium/NativeMessagingHosts"
_CHROME_LINUX_SYSTEM = "/etc/opt/chrome/native-messaging-hosts"
_CHROMIUM_LINUX_SYSTEM = "/etc/chromium/native-messaging-hosts"
_FIREFOX_LIB64 = "/usr/lib64/mozilla/native-messaging-hosts"
_FIREFOX_LIB = "/usr/lib/mozilla/native-messaging-hosts"

# Where an installed Firefox's libxul lives on Linux; the system manifest folder is
# fixed in it at build time (below, firefox_system_folder).
FIREFOX_LIBXUL = ("/usr/lib/firefox-esr/libxul.so", "/usr/lib/firefox/libxul.so",
                  "/usr/lib64/firefox/libxul.so", "/usr/lib64/firefox-esr/libxul.so",
                  "/opt/firefox/libxul.so", "/usr/local/lib/firefox/libxul.so")

# Environment variables naming a Chromium build's config home on Linux, in the order
# it reads them (then ~/.config). Chromium chrome/common/chrome_paths_linux.cc
# GetDefaultUserDataDirectory: $CHROME_CONFIG_HOME, else $XDG_CONFIG_HOME, else
# ~/.config. Brave replaces that function (brave-core
# chromium_src/chrome/common/chrome_paths_linux.cc) and reads only $XDG_CONFIG_HOME.
_CHROMIUM_CONFIG_ENV = ("CHROME_CONFIG_HOME", "XDG_CONFIG_HOME")
_BRAVE_CONFIG_ENV = ("XDG_CONFIG_HOME",)


@dataclass(frozen=True)
class BrowserInfo:
    """Where one browser keeps things, per platform (paths relative to HOME unless absolute).

    User-level manifests of a Chromium-family browser live in
    ``<user data dir>/NativeMessagingHosts`` (Chromium
    chrome/common/chrome_paths.cc, DIR_USER_NATIVE_MESSAGING); system-level ones in
    fixed folders (chrome_paths.cc DIR_NATIVE_MESSAGING). Firefox reads
    ``~/.mozilla/native-messaging-hosts`` then one system folder
    (toolkit/xre/nsXREDirProvider.cpp, NativeManifests.sys.mjs).
    """

    key: str
    label: str
    family: str  # "chromium" (allowed_origins) or "firefox" (allowed_extensions)
    linux_config: str  # the user data dir's name under the config home (Chromium family)
    linux_config_env: tuple[str, ...]  # variables naming the config home, in order
    linux_system: tuple[str, ...]  # system manifest folders install writes, in search order
    mac_user: str  # user manifest folder relative to HOME
    mac_profile: str  # the browser's own profile folder relative to HOME (detection)
    mac_system: tuple[str, ...]
    mac_app: str
    win_profile: str  # relative to %LOCALAPPDATA% (Firefox: %APPDATA%), '/'-separated
    win_keys: tuple[str, ...]  # registry keys read in each hive, in order
    commands: tuple[str, ...]  # names on PATH (Linux)
    flatpak_id: str
    flatpak_dir: str  # manifest folder relative to ~/.var/app/<id>/
    snap: str | None = None
    # Why --user-data-dir cannot place a manifest for this browser (None: it can).
    no_profile: str | None = None

    @property
    def win_key(self) -> str:
        """The key install writes: the first one the browser reads."""
        return self.win_keys[0]


BROWSERS: dict[str, BrowserInfo] = {
    b.key: b
    for b in (
        # Chrome: chrome_paths_linux.cc ("google-chrome"), chrome_paths_mac.mm
        # ("Google/Chrome"), chrome_paths.cc (/etc/opt/chrome/native-messaging-hosts,
        # /Library/Google/Chrome/NativeMessagingHosts); a Google-branded build reads
        # only Chrome's key (launch_context_win.cc).
        BrowserInfo(
            "chrome", "Google Chrome", "chromium",
            "google-chrome", _CHROMIUM_CONFIG_ENV, (_CHROME_LINUX_SYSTEM,),
            _CHROME_MAC_USER, "Library/Application Support/Google/Chrome",
            (_CHROME_MAC_SYSTEM,), "/Applications/Google Chrome.app",
            "Google/Chrome/User Data", (_CHROME_KEY,),
            ("google-chrome", "google-chrome-stable"),
            "com.google.Chrome", "config/google-chrome/NativeMessagingHosts",
        ),
        # Chromium: same files, Chromium branding ("chromium", /etc/chromium/...,
        # /Library/Application Support/Chromium/...); on Windows the Chromium key,
        # then Chrome's (launch_context_win.cc, CHROMIUM_BRANDING).
        BrowserInfo(
            "chromium", "Chromium", "chromium",
            "chromium", _CHROMIUM_CONFIG_ENV, (_CHROMIUM_LINUX_SYSTEM,),
            "Library/Application Support/Chromium/NativeMessagingHosts",
            "Library/Application Support/Chromium",
            (_CHROMIUM_MAC_SYSTEM,), "/Applications/Chromium.app",
            "Chromium/User Data", (_CHROMIUM_KEY, _CHROME_KEY),
            ("chromium", "chromium-browser"),
            "org.chromium.Chromium", "config/chromium/NativeMessagingHosts",
            snap="chromium",
        ),
        # Edge: Microsoft's native messaging docs (learn.microsoft.com, "Native
        # messaging"): Linux ~/.config/microsoft-edge and /etc/opt/edge, macOS
        # "Microsoft Edge" and /Library/Microsoft/Edge; Windows keys Edge, Chromium,
        # Chrome in HKCU, then the same in HKLM.
        BrowserInfo(
            "edge", "Microsoft Edge", "chromium",
            "microsoft-edge", _CHROMIUM_CONFIG_ENV, ("/etc/opt/edge/native-messaging-hosts",),
            "Library/Application Support/Microsoft Edge/NativeMessagingHosts",
            "Library/Application Support/Microsoft Edge",
            ("/Library/Microsoft/Edge/NativeMessagingHosts",), "/Applications/Microsoft Edge.app",
            "Microsoft/Edge/User Data", (_EDGE_KEY, _CHROMIUM_KEY, _CHROME_KEY),
            ("microsoft-edge", "microsoft-edge-stable"),
            "com.microsoft.Edge", "config/microsoft-edge/NativeMessagingHosts",
        ),
        # Brave: brave-core chromium_src/chrome/common/chrome_paths_linux.cc (user
        # data dir $XDG_CONFIG_HOME/BraveSoftware/Brave-Browser); its system folder
        # on Linux is Chrome's, /etc/opt/chrome/native-messaging-hosts. On macOS
        # brave-core app/brave_main_delegate.cc points both native messaging folders
        # at Chrome's ("because that's where native apps will create them"). Brave
        # fixes the user folder, so a --user-data-dir profile does not move it.
        # Windows: a Chromium-branded build, Chromium key then Chrome's.
        BrowserInfo(
            "brave", "Brave", "chromium",
            "BraveSoftware/Brave-Browser", _BRAVE_CONFIG_ENV, (_CHROME_LINUX_SYSTEM,),
            _CHROME_MAC_USER, "Library/Application Support/BraveSoftware/Brave-Browser",
            (_CHROME_MAC_SYSTEM,), "/Applications/Brave Browser.app",
            "BraveSoftware/Brave-Browser/User Data", (_CHROMIUM_KEY, _CHROME_KEY),
            ("brave-browser", "brave"),
            "com.brave.Browser", "config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            snap="brave",
            no_profile="Brave reads user-level hosts from a fixed folder, not from the "
                       "profile's --user-data-dir",
        ),
        # Vivaldi: Chromium-branded chrome_paths (user data dir "vivaldi"); system
        # folders are Chromium's (/etc/chromium/..., /Library/Application
        # Support/Chromium/...); older builds read Chrome's, so both are written.
        # A profile outside its own folder falls back to Chrome's user folder.
        BrowserInfo(
            "vivaldi", "Vivaldi", "chromium",
            "vivaldi", _CHROMIUM_CONFIG_ENV, (_CHROMIUM_LINUX_SYSTEM, _CHROME_LINUX_SYSTEM),
            "Library/Application Support/Vivaldi/NativeMessagingHosts",
            "Library/Application Support/Vivaldi",
            (_CHROMIUM_MAC_SYSTEM, _CHROME_MAC_SYSTEM), "/Applications/Vivaldi.app",
            "Vivaldi/User Data", (_CHROMIUM_KEY, _CHROME_KEY),
            ("vivaldi", "vivaldi-stable"),
            "com.vivaldi.Vivaldi", "config/vivaldi/NativeMessagingHosts",
            no_profile="Vivaldi does not read hosts from a --user-data-dir profile (it falls "
                       "back to Chrome's user folder)",
        ),
        # Firefox: MDN "Native manifests"; toolkit/xre/nsXREDirProvider.cpp (user
        # ~/.mozilla, system /usr/lib64/mozilla or /usr/lib/mozilla chosen at build
        # time by HAVE_USR_LIB64_DIR; macOS "Mozilla" under Application Support);
        # NativeManifests.sys.mjs reads user then system, and on Windows HKCU then
        # HKLM under Software\Mozilla\NativeMessagingHosts.
        BrowserInfo(
            "firefox", "Firefox", "firefox",
            ".mozilla", (), (_FIREFOX_LIB64, _FIREFOX_LIB),
            "Library/Application Support/Mozilla/NativeMessagingHosts",
            "Library/Application Support/Firefox",
            ("/Library/Application Support/Mozilla/NativeMessagingHosts",),
            "/Applications/Firefox.app",
            "Mozilla/Firefox", (_MOZILLA_KEY,),
            ("firefox", "firefox-esr"),
            "org.mozilla.firefox", ".mozilla/native-messaging-hosts",
            snap="firefox",
            no_profile="Firefox reads host manifests per user, not per profile: use --home "
                       "DIR instead of --user-data-dir",
        ),
    )
}


class Registry(Protocol):
    """The default values of registry keys (Windows); a dict stands in for it in tests."""

    def get(self, hive: str, key: str) -> str | None: ...

    def set(self, hive: str, key: str, value: str) -> None: ...

    def delete(self, hive: str, key: str) -> None: ...


class WinRegistry:
    """:class:`Registry` over ``winreg`` (imported only on Windows).

    Browsers read the 32-bit view, then the 64-bit one (launch_context_win.cc);
    reads here try both views, writes go to the default view of this Python.
    """

    def _winreg(self) -> Any:
        return import_module("winreg")

    def get(self, hive: str, key: str) -> str | None:
        winreg = self._winreg()
        for view in (winreg.KEY_WOW64_32KEY, winreg.KEY_WOW64_64KEY):
            try:
                with winreg.OpenKey(getattr(winreg, hive), key, 0,
                                    winreg.KEY_QUERY_VALUE | view) as handle:
                    value, _kind = winreg.QueryValueEx(handle, "")
            except OSError:
                continue
            return str(value)
        return None

    def set(self, hive: str, key: str, value: str) -> None:
        winreg = self._winreg()
        with winreg.CreateKey(getattr(winreg, hive), key) as handle:
            winreg.SetValueEx(handle, "", 0, winreg.REG_SZ, value)

    def delete(self, hive: str, key: str) -> None:
        winreg = self._winreg()
        winreg.DeleteKey(getattr(winreg, hive), key)


@dataclass(frozen=True)
class Platform:
    """The machine as the installer sees it; tests pass another OS, HOME and registry."""

    system: str  # "linux", "darwin" or "win32"
    home: Path
    env: Mapping[str, str] = field(default_factory=dict)
    which: Callable[[str], str | None] = shutil.which
    registry: Registry | None = None
    exists: Callable[[Path], bool] = Path.exists
    libxul: tuple[str, ...] = FIREFOX_LIBXUL
    root: Path = Path("/")  # system folders are under it (tests use a temporary root)

    def at(self, path: str) -> Path:
        """An absolute system path under :attr:`root`."""
        return self.root / path.lstrip("/")

    def appdata(self, name: str, fallback: str) -> Path:
        raw = self.env.get(name)
        return Path(raw) if raw else self.home / fallback


def current_platform(home: Path | None = None) -> Platform:
    system = sys.platform if sys.platform in ("win32", "darwin") else "linux"
    return Platform(system, home or Path.home(), dict(os.environ),
                    registry=WinRegistry() if system == "win32" else None)


@dataclass(frozen=True)
class Location:
    """One place a browser reads a manifest from.

    ``folder`` holds the manifest file; on Windows ``registry`` = (hive, key) names it.
    ``flatpak`` is the app id when the folder is inside a Flatpak sandbox.
    ``family`` is set for a ``--manifest-dir`` location (browser ``custom``).
    """

    browser: str
    scope: str  # "user", "system", "profile" (--user-data-dir) or "custom" (--manifest-dir)
    folder: Path
    registry: tuple[str, str] | None = None
    flatpak: str | None = None
    family: str | None = None

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def manifest_family(self) -> str:
        return self.family or browser_info(self.browser).family

    def describe(self) -> str:
        if self.registry is not None:
            return f"{self.registry[0]}\\{self.registry[1]}"
        return str(self.manifest)


def browser_info(name: str) -> BrowserInfo:
    try:
        return BROWSERS[name]
    except KeyError:
        raise InstallError(f"unknown browser {name!r} (known: {', '.join(BROWSERS)}, all; "
                           "for another browser use --manifest-dir DIR --family "
                           "chromium|firefox)") from None


def custom_location(folder: Path, family: str, plat: Platform) -> Location:
    """A ``--manifest-dir`` location for a browser we do not list (a fork)."""
    if family not in FAMILIES:
        raise InstallError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    if plat.system == "win32":
        raise InstallError("--manifest-dir does not work on Windows: browsers there find hosts "
                           "only through the registry; Chromium forks read the Chromium or "
                           "Chrome key (`--browser chromium`), Firefox forks Mozilla's "
                           "(`--browser firefox`)")
    return Location(CUSTOM, "custom", folder.expanduser().absolute(), family=family)


def _windows_folder(plat: Platform, key: str, scope: str) -> Path:
    # Windows keeps the manifest wherever the registry says; one folder per key,
    # so browsers sharing a key share one registration (docs/install.md).
    base = (plat.appdata("ProgramData", "ProgramData") if scope == "system"
            else plat.appdata("LOCALAPPDATA", "AppData/Local"))
    slug = key.split("\\")[-2].lower()
    return base / "flattr-companion" / "native-messaging" / slug


def config_home(plat: Platform, info: BrowserInfo) -> Path:
    """The Linux config home a Chromium-family browser puts its user data dir in."""
    for var in info.linux_config_env:
        raw = plat.env.get(var)
        if raw:
            return Path(raw)
    return plat.home / ".config"


def user_folder(plat: Platform, info: BrowserInfo) -> Path:
    """The user-level manifest folder of ``info`` on a POSIX ``plat``."""
    if plat.system == "darwin":
        return plat.home / info.mac_user
    if info.family == "firefox":
        return plat.home / ".mozilla" / "native-messaging-hosts"
    return config_home(plat, info) / info.linux_config / "NativeMessagingHosts"


def firefox_system_folder(plat: Platform) -> Path | None:
    """The one system folder this machine's Firefox reads on Linux, None if unknown.

    nsXREDirProvider.cpp fixes it at build time: ``/usr/lib64/mozilla`` when the
    build machine had a ``/usr/lib64`` directory, else ``/usr/lib/mozilla``. The
    string is in libxul, so look there (Debian's firefox-esr reads ``/usr/lib``
    though Debian has a ``/usr/lib64``).
    """
    for raw in plat.libxul:
        path = plat.at(raw)
        if not plat.exists(path):
            continue
        reads_lib64 = _libxul_reads_lib64(path)
        if reads_lib64 is not None:
            return plat.at(_FIREFOX_LIB64 if reads_lib64 else _FIREFOX_LIB)
    return None


_LIBXUL_SEEN: dict[tuple[str, int, int], bool] = {}


def _libxul_reads_lib64(path: Path) -> bool | None:
    """True if the libxul at ``path`` names /usr/lib64/mozilla; None if unreadable.

    A libxul is ~200 MB: it is searched with mmap (no copy) once per file version.
    """
    import mmap

    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _LIBXUL_SEEN:
            with open(path, "rb") as handle, \
                    mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _LIBXUL_SEEN[key] = data.find(_FIREFOX_LIB64.rsplit("/", 1)[0].encode()) >= 0
        return _LIBXUL_SEEN[key]
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None


def _system_folders(plat: Platform, info: BrowserInfo) -> list[Path]:
    if plat.system == "darwin":
        return [plat.at(p) for p in info.mac_system]
    if info.family == "firefox":
        # One of the two is read; write both where /usr/lib64 exists (the build may
        # have had it even if this machine's Firefox does not use it).
        return [plat.at(p) for p in info.linux_system
                if p != _FIREFOX_LIB64 or plat.exists(plat.at("/usr/lib64"))]
    return [plat.at(p) for p in info.linux_system]


def targets(name: str, plat: Platform, scope: str = "user",
            user_data_dir: Path | None = None) -> list[Location]:
    """Where ``install`` writes for ``name`` in ``scope`` ("user" or "system")."""
    info = browser_info(name)
    if user_data_dir is not None:
        if scope == "system":
            raise InstallError("--user-data-dir and --system do not go together")
        if plat.system == "win32":
            raise InstallError("--user-data-dir does not work on Windows: the browser finds "
                               "hosts only through the registry, whatever the profile; drop "
                               "the option (install writes the HKEY_CURRENT_USER key)")
        if info.no_profile is not None:
            raise InstallError(f"{info.no_profile}; drop --user-data-dir (install writes "
                               f"{user_folder(plat, info)})")
        # A profile started with --user-data-dir reads user manifests only from
        # there (DIR_USER_NATIVE_MESSAGING is under the user data dir; measured,
        # docs/install.md).
        return [Location(name, "profile", user_data_dir / "NativeMessagingHosts")]
    if plat.system == "win32":
        hive = HKLM if scope == "system" else HKCU
        return [Location(name, scope, _windows_folder(plat, info.win_key, scope),
                         (hive, f"{info.win_key}\\{HOST_NAME}"))]
    if scope == "system":
        return [Location(name, "system", folder) for folder in _system_folders(plat, info)]
    return [Location(name, "user", user_folder(plat, info))]


def target(name: str, plat: Platform, scope: str = "user",
           user_data_dir: Path | None = None) -> Location:
    """The first (main) place :func:`targets` writes."""
    return targets(name, plat, scope, user_data_dir)[0]


def search_order(name: str, plat: Platform, user_data_dir: Path | None = None) -> list[Location]:
    """Every place ``name`` reads a manifest from, in the order it looks (first found wins).

    Chromium family: the user folder (or the profile's), then the system folder
    (chrome_paths.cc; native_messaging_host_manifest lookup). Windows: for each
    hive, HKCU then HKLM, every key the browser reads in its order
    (launch_context_win.cc; Edge's docs). Firefox: user then the one system folder
    its build reads (NativeManifests.sys.mjs).
    """
    info = browser_info(name)
    if plat.system == "win32":
        out = []
        for hive, scope in ((HKCU, "user"), (HKLM, "system")):
            for key in info.win_keys:
                out.append(Location(name, scope, _windows_folder(plat, key, scope),
                                    (hive, f"{key}\\{HOST_NAME}")))
        return out
    if user_data_dir is not None and info.no_profile is None:
        first = [Location(name, "profile", user_data_dir / "NativeMessagingHosts")]
    else:
        first = [Location(name, "user", user_folder(plat, info))]
    if plat.system == "linux" and info.family == "firefox":
        used = firefox_system_folder(plat) or plat.at(_FIREFOX_LIB)
        return [*first, Location(name, "system", used)]
    return [*first, *(Location(name, "system", f) for f in _system_folders(plat, info))]


def sharing(location: Location, plat: Platform | None = None) -> list[str]:
    """Other browsers that read the same registration: a registry key (Windows) or a
    folder (e.g. Brave and Chrome on macOS, Brave and Chrome system-wide on Linux)."""
    if location.browser == CUSTOM:
        return []
    if location.registry is not None:
        key = location.registry[1].rsplit("\\", 1)[0]
        return [b.key for b in BROWSERS.values()
                if key in b.win_keys and b.key != location.browser]
    if plat is None or location.scope == "profile" or location.flatpak:
        return []
    out = []
    family = location.manifest_family
    for other in BROWSERS.values():
        if other.key == location.browser or other.family != family:
            continue
        folders = [loc.folder for loc in search_order(other.key, plat)]
        if location.folder in folders:
            out.append(other.key)
    return out


# -- detection ------------------------------------------------------------------------

@dataclass(frozen=True)
class Sandbox:
    """A sandboxed install of a browser: what we can do and what the user must do."""

    kind: str  # "flatpak" or "snap"
    browser: str
    app: str
    location: Location | None  # where install writes for it, None if unreachable
    advice: str


def detect(plat: Platform) -> list[str]:
    """The browsers found on this machine (native installs; sandboxes: :func:`sandboxes`)."""
    found = []
    for info in BROWSERS.values():
        if plat.system == "win32":
            base = (plat.appdata("APPDATA", "AppData/Roaming") if info.family == "firefox"
                    else plat.appdata("LOCALAPPDATA", "AppData/Local"))
            hit = plat.exists(base / info.win_profile)
        elif plat.system == "darwin":
            hit = plat.exists(plat.at(info.mac_app)) or plat.exists(plat.home / info.mac_profile)
        else:
            hit = (any(plat.which(cmd) for cmd in info.commands)
                   or plat.exists(plat.home / ".mozilla" if info.family == "firefox"
                                  else config_home(plat, info) / info.linux_config))
        if hit:
            found.append(info.key)
    return found


def flatpak_override_granted(plat: Platform, app: str) -> bool:
    """True if the user or the system let ``app`` talk to org.freedesktop.Flatpak."""
    data = Path(plat.env.get("XDG_DATA_HOME") or plat.home / ".local" / "share")
    for path in (data / "flatpak" / "overrides" / app, plat.at("/var/lib/flatpak/overrides") / app):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if f"{FLATPAK_TALK}=talk" in text.replace(" ", ""):
            return True
    return False


def flatpak_command(app: str) -> str:
    return f"flatpak override --user --talk-name={FLATPAK_TALK} {app}"


def sandboxes(plat: Platform, names: list[str] | None = None) -> list[Sandbox]:
    """Flatpak and Snap installs of the given browsers (all by default), with advice."""
    if plat.system != "linux":
        return []
    data = Path(plat.env.get("XDG_DATA_HOME") or plat.home / ".local" / "share")
    out = []
    for info in BROWSERS.values():
        if names is not None and info.key not in names:
            continue
        app = info.flatpak_id
        if any(plat.exists(p) for p in (plat.home / ".var" / "app" / app,
                                         data / "flatpak" / "app" / app,
                                         plat.at("/var/lib/flatpak/app") / app)):
            folder = plat.home / ".var" / "app" / app / info.flatpak_dir
            location = Location(info.key, "user", folder, flatpak=app)
            if flatpak_override_granted(plat, app):
                advice = (f"{info.label} (Flatpak {app}) may run programs outside its sandbox; "
                          "restart it to pick up the manifest")
            else:
                advice = (f"{info.label} (Flatpak {app}) cannot see this host's Python from inside "
                          f"its sandbox. The manifest is in place; to let the browser start the "
                          f"host outside the sandbox run `{flatpak_command(app)}` and restart "
                          f"{info.label} (this lets {info.label} run any command outside its "
                          "sandbox). Alternative: use the distribution's package of the browser")
            out.append(Sandbox("flatpak", info.key, app, location, advice))
        if info.snap and (plat.exists(plat.at("/snap") / info.snap)
                          or plat.exists(plat.home / "snap" / info.snap)):
            if info.family == "firefox":
                advice = ("Firefox (Snap) starts native hosts through the desktop portal and "
                          "reads the normal manifest in ~/.mozilla/native-messaging-hosts: "
                          "`flattr-host install --browser firefox` covers it; Firefox asks once "
                          "for permission. It needs xdg-desktop-portal running (Ubuntu 22.04 "
                          "or later)")
                out.append(Sandbox("snap", info.key, info.snap, None, advice))
            else:
                advice = (f"{info.label} (Snap) is confined: it cannot start programs outside "
                          "the snap, so no manifest can make the host reachable. Use "
                          f"{info.label} from a .deb/.rpm package, or the Flatpak with the "
                          "override above")
                out.append(Sandbox("snap", info.key, info.snap, None, advice))
    return out


# -- templates ------------------------------------------------------------------------

def _template(name: str) -> str:
    """A template from the package data (``flattr_host/templates``)."""
    from importlib.resources import files

    resource = files("flattr_host").joinpath("templates", name)
    try:
        return resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstallError(f"template {name} missing from the flattr_host package "
                           f"({exc.strerror or exc}): reinstall flattr-companion") from None


def _fill_json(value: Any, values: Mapping[str, Any]) -> Any:
    """Replace whole-string placeholders in a parsed template (no text splicing)."""
    if isinstance(value, dict):
        return {k: _fill_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_json(v, values) for v in value]
    if isinstance(value, str) and value in values:
        return values[value]
    return value


def split_ids(extension_ids: list[str] | None) -> tuple[list[str], list[str]]:
    """(Chromium ids, Firefox add-on ids) from ``--extension-id`` values; defaults if none.

    A Chromium id is 32 letters a-p; anything else (``x@y``, ``{uuid}``) is an add-on id.
    """
    chromium: list[str] = []
    firefox: list[str] = []
    for ext in extension_ids or []:
        is_chromium = len(ext) == 32 and all("a" <= c <= "p" for c in ext)
        bucket = chromium if is_chromium else firefox
        if ext not in bucket:
            bucket.append(ext)
    return chromium or [CHROMIUM_EXTENSION_ID], firefox or [FIREFOX_EXTENSION_ID]


def manifest_body(family: str, launcher: Path, extension_ids: list[str] | None) -> dict[str, Any]:
    """The host manifest for ``family``, from the ``<family>.json`` template."""
    chromium, firefox = split_ids(extension_ids)
    allowed: list[str] = ([f"chrome-extension://{ext}/" for ext in chromium]
                          if family == "chromium" else firefox)
    template = json.loads(_template(f"{family}.json"))
    body: dict[str, Any] = _fill_json(template, {"@NAME@": HOST_NAME, "@PATH@": str(launcher),
                                                 "@ALLOWED@": allowed})
    return body


def launcher_environment(data_home: Path | None, extension_ids: list[str] | None,
                         env: Mapping[str, str]) -> dict[str, str]:
    """The settings a launcher fixes: data directory, allowed ids, FLATTR_* in force now."""
    fixed: dict[str, str] = {}
    if data_home is not None:
        fixed["FLATTR_HOST_HOME"] = str(data_home)
    for var in ENV:
        if var not in ("FLATTR_HOST_HOME", "FLATTR_ALLOWED_EXTENSIONS") and env.get(var):
            fixed[var] = env[var]
    if extension_ids:
        chromium, firefox = split_ids(extension_ids)
        ids = [*chromium, *firefox]
        for default in (CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID):
            if default not in ids:
                ids.append(default)
        fixed["FLATTR_ALLOWED_EXTENSIONS"] = ",".join(ids)
    elif env.get("FLATTR_ALLOWED_EXTENSIONS"):
        fixed["FLATTR_ALLOWED_EXTENSIONS"] = env["FLATTR_ALLOWED_EXTENSIONS"]
    return fixed


def launcher_script(python: str, environment: Mapping[str, str], browser: str = "chromium",
                    windows: bool = False) -> str:
    """The launcher text from the ``launcher.sh`` or ``launcher.cmd`` template."""
    if windows:
        lines = [f'if not defined {k} set "{k}={_cmd_escape(v)}"' for k, v in environment.items()]
        python_arg = f'"{_cmd_escape(python)}"'
        text = _template("launcher.cmd").replace("\r\n", "\n")
    else:
        lines = [f'if [ -z "${{{k}:-}}" ]; then {k}={shlex.quote(v)}; export {k}; fi'
                 for k, v in environment.items()]
        python_arg = shlex.quote(python)
        text = _template("launcher.sh").replace("@BOOT@", shlex.quote(bootstrap_code()))
    text = (text.replace("@VERSION@", __version__).replace("@BROWSER@", browser)
            .replace("@ENVIRONMENT@", "\n".join(lines)).replace("@PYTHON@", python_arg))
    return text.replace("\n", "\r\n") if windows else text


def bootstrap_code() -> str:
    """Python for ``python -S -c``: import ``flattr_host`` without ``site``.

    Start-up is the host's main cost (docs/performance.md): ``site`` and an editable
    install's import hook take ~10 ms before the first line of the host runs. The
    launcher skips them with ``-S``; this code puts the interpreter's site-packages
    on ``sys.path`` (for the lazily imported ``cryptography``) and registers the
    package from its folder, wherever it is installed, then runs the entry
    (:mod:`flattr_host.__main__`).
    """
    import sysconfig

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = sysconfig.get_paths()
    sites = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    # Double quotes only (JSON strings are Python strings): the shell launcher wraps
    # the whole program in single quotes.
    return (
        "import sys;"
        f"sys.path.extend({json.dumps(sites)});"
        f"p={json.dumps(package)};"
        'm=type(sys)("flattr_host");m.__path__=[p];m.__file__=p+"/__init__.py";'
        'm.__package__="flattr_host";sys.modules["flattr_host"]=m;'
        'exec(compile(open(m.__file__,"rb").read(),m.__file__,"exec"),m.__dict__);'
        "from flattr_host.__main__ import main;sys.exit(main())"
    )


def flatpak_wrapper(host_launcher: Path, app: str, browser: str) -> str:
    return (_template("launcher-flatpak.sh").replace("@VERSION@", __version__)
            .replace("@BROWSER@", browser).replace("@APP_ID@", app)
            .replace("@HOST_LAUNCHER@", shlex.quote(str(host_launcher))))


def _cmd_escape(value: str) -> str:
    """``value`` for ``set "NAME=value"`` in a .cmd file; a quote or a control
    character (a line break would end the command) is refused."""
    if '"' in value:
        raise InstallError(f"cannot put {value!r} in a Windows launcher: it holds a quote")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InstallError(f"cannot put {value!r} in a Windows launcher: it holds a control "
                           "character")
    return value.replace("%", "%%")


# -- install / uninstall ----------------------------------------------------------------

@dataclass
class Installed:
    """What install did at one location."""

    location: Location
    manifest: Path
    launcher: Path
    changed: bool
    notes: list[str] = field(default_factory=list)


def launcher_path(location: Location, windows: bool) -> Path:
    return location.folder / (f"{LAUNCHER_NAME}.cmd" if windows else LAUNCHER_NAME)


def _write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Write ``text`` atomically unless the file already holds it; True if written."""
    try:
        if path.read_bytes() == text.encode("utf-8"):
            if os.name == "posix" and (path.stat().st_mode & 0o777) != mode:
                os.chmod(path, mode)
                return True
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def install_at(location: Location, plat: Platform, extension_ids: list[str] | None,
               data_home: Path | None, python: str | None = None) -> Installed:
    """Write the launcher, the manifest and (Windows) the registry key at ``location``."""
    label = location.browser
    windows = plat.system == "win32"
    python = python or sys.executable
    # A system-wide launcher must not pin one user's data directory.
    home = None if location.scope == "system" else data_home
    environment = launcher_environment(home, extension_ids, plat.env)
    launcher = launcher_path(location, windows)
    try:
        location.folder.mkdir(parents=True, exist_ok=True)
        changed = False
        if location.flatpak is not None:
            real = location.folder / HOST_LAUNCHER_NAME
            changed |= _write_if_changed(real, launcher_script(python, environment, label),
                                         0o755)
            changed |= _write_if_changed(launcher, flatpak_wrapper(real, location.flatpak,
                                                                   label), 0o755)
        else:
            changed |= _write_if_changed(launcher, launcher_script(python, environment, label,
                                                                   windows), 0o755)
        body = manifest_body(location.manifest_family, launcher, extension_ids)
        changed |= _write_if_changed(location.manifest, json.dumps(body, indent=2) + "\n", 0o644)
    except OSError as exc:
        hint = " (system folders need root: run with sudo, or use --user)" \
            if location.scope == "system" else ""
        raise InstallError(f"cannot write to {location.folder}: {exc.strerror or exc}{hint}") \
            from None
    if location.registry is not None:
        registry = _registry(plat)
        hive, key = location.registry
        if registry.get(hive, key) != str(location.manifest):
            try:
                registry.set(hive, key, str(location.manifest))
            except OSError as exc:
                raise InstallError(f"cannot write registry key {hive}\\{key}: {exc}") from None
            changed = True
    return Installed(location, location.manifest, launcher, changed)


def _registry(plat: Platform) -> Registry:
    if plat.registry is None:
        raise InstallError("no Windows registry available on this platform")
    return plat.registry


def resolve_browsers(name: str, plat: Platform) -> list[str]:
    """``all`` -> every browser found (an error if none); otherwise the one name, checked."""
    if name != "all":
        browser_info(name)
        return [name]
    found = detect(plat)
    flat = [s.browser for s in sandboxes(plat) if s.kind == "flatpak"]
    found += [b for b in flat if b not in found]
    if not found:
        raise InstallError(f"no supported browser found (looked for {', '.join(BROWSERS)}); "
                           "name one with --browser")
    return found


def install(name: str, plat: Platform, scope: str = "user", user_data_dir: Path | None = None,
            extension_ids: list[str] | None = None, data_home: Path | None = None,
            python: str | None = None) -> list[Installed]:
    """Install for ``name`` (or ``all``): the browser's own folders, plus its Flatpak sandbox.

    Sandboxed installs that cannot be reached come back as notes on the result. A
    folder two browsers share (Brave and Chrome on macOS) is written once.
    """
    results: list[Installed] = []
    written: set[Path] = set()

    def put(location: Location) -> Installed | None:
        if location.manifest in written:
            return None
        written.add(location.manifest)
        done = install_at(location, plat, extension_ids, data_home, python)
        results.append(done)
        return done

    for browser in resolve_browsers(name, plat):
        normal = browser in detect(plat) or name != "all" or user_data_dir is not None
        boxes = [] if user_data_dir is not None or scope == "system" else sandboxes(plat, [browser])
        if normal or any(b.kind == "flatpak" and b.browser == "firefox" for b in boxes):
            # Flatpak Firefox starts hosts through the portal (or
            # xdg-native-messaging-proxy), which read the host's ~/.mozilla.
            for location in targets(browser, plat, scope, user_data_dir):
                put(location)
        for box in boxes:
            if box.location is not None:
                done = put(box.location)
                if done is not None:
                    done.notes.append(box.advice)
            elif results:
                results[-1].notes.append(box.advice)
            else:
                raise InstallError(box.advice)
    return results


def install_custom(location: Location, plat: Platform, extension_ids: list[str] | None = None,
                   data_home: Path | None = None, python: str | None = None) -> list[Installed]:
    """Install into a ``--manifest-dir`` folder (a browser we do not list)."""
    return [install_at(location, plat, extension_ids, data_home, python)]


def owned_launcher(path: Path) -> bool:
    """True if ``path`` is a launcher ``flattr-host install`` wrote."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return LAUNCHER_MARK in handle.read(4096)
    except OSError:
        return False


@dataclass
class Removal:
    """What uninstall did: paths (or keys) removed, and those of ours it left, with why."""

    removed: list[str] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: Removal) -> None:
        self.removed += [r for r in other.removed if r not in self.removed]
        seen = {path for path, _ in self.left}
        self.left += [item for item in other.left if item[0] not in seen]


def _unlink(path: Path, result: Removal, system: bool) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        hint = " (a system folder: run with sudo ... --system)" if system else ""
        result.left.append((str(path), f"cannot remove it: {exc.strerror or exc}{hint}"))
        return False
    result.removed.append(str(path))
    return True


def _manifest_verdict(manifest: Path, launchers: list[Path]) -> str | None:
    """None if ``manifest`` is ours to remove, else the reason to leave it."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"not valid JSON ({type(exc).__name__}); remove it by hand if it is not wanted"
    if not isinstance(data, dict) or data.get("name") != HOST_NAME:
        return f"its name is not {HOST_NAME!r}: another program's file"
    raw = data.get("path")
    if not isinstance(raw, str) or not raw:
        return f"its path is {raw!r}; remove it by hand if it is not wanted"
    path = Path(raw)
    if path in launchers:
        # Ours, or a dangling manifest install wrote whose launcher is already gone.
        return None if owned_launcher(path) or not path.exists() else (
            f"its launcher {path} has no {LAUNCHER_MARK!r} mark (edited by hand?)")
    if owned_launcher(path):
        return None
    return (f"its path was changed to {raw}, which flattr-host install did not write; "
            "remove it by hand if it is not wanted")


def uninstall_at(location: Location, plat: Platform) -> Removal:
    """Remove what install wrote at ``location``; say why anything of ours stays."""
    result = Removal()
    windows = plat.system == "win32"
    system = location.scope == "system"
    launcher = launcher_path(location, windows)
    real = location.folder / HOST_LAUNCHER_NAME
    manifest = location.manifest
    keep_launchers: set[Path] = set()
    if manifest.exists():
        why = _manifest_verdict(manifest, [launcher, real])
        if why is None:
            _unlink(manifest, result, system)
        else:
            result.left.append((str(manifest), why))
            try:
                target_path = Path(json.loads(manifest.read_text(encoding="utf-8"))["path"])
                keep_launchers.add(target_path)
            except (OSError, ValueError, KeyError, TypeError):
                pass
    for path in (launcher, real):
        if not path.exists() or path in keep_launchers:
            if path.exists():
                result.left.append((str(path), f"{manifest} still points at it"))
            continue
        if owned_launcher(path):
            _unlink(path, result, system)
        else:
            result.left.append((str(path), f"no {LAUNCHER_MARK!r} mark: not written by "
                                           "flattr-host install"))
    if location.registry is not None:
        registry = _registry(plat)
        hive, key = location.registry
        value = registry.get(hive, key)
        if value is not None and Path(value) == manifest and not manifest.exists():
            try:
                registry.delete(hive, key)
                result.removed.append(f"{hive}\\{key}")
            except OSError as exc:
                result.left.append((f"{hive}\\{key}", f"cannot remove it: {exc}"))
        elif value is not None and Path(value) == manifest:
            result.left.append((f"{hive}\\{key}", f"it names {manifest}, which stays"))
        elif value is not None and _file_name(value) == MANIFEST_NAME:
            result.left.append((f"{hive}\\{key}", f"it names {value}, not the manifest "
                                                   "flattr-host install writes"))
    return result


def _file_name(path: str) -> str:
    """The last part of a registry value's path, with either separator."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def uninstall_locations(name: str, plat: Platform, scope: str = "user",
                        user_data_dir: Path | None = None) -> list[Location]:
    """Every place ``uninstall`` looks for ``name`` (or ``all``) in ``scope``."""
    names = list(BROWSERS) if name == "all" else [name]
    out: list[Location] = []
    for browser in names:
        browser_info(browser)
        if user_data_dir is not None:
            out += targets(browser, plat, scope, user_data_dir)
            continue
        out += targets(browser, plat, scope)
        if scope == "system" and plat.system == "linux" and browser == "firefox":
            out += [Location(browser, "system", plat.at(p))
                    for p in BROWSERS[browser].linux_system]
        if scope == "user":
            out += [b.location for b in sandboxes(plat, [browser]) if b.location]
    unique: dict[tuple[Path, tuple[str, str] | None], Location] = {}
    for loc in out:
        unique.setdefault((loc.folder, loc.registry), loc)
    return list(unique.values())


def uninstall(name: str, plat: Platform, scope: str = "user",
              user_data_dir: Path | None = None) -> list[str]:
    """Remove what :func:`install` wrote for ``name`` (or ``all``) in ``scope``; the
    removed paths and keys (:func:`uninstall_report` also says what stays)."""
    return uninstall_report(name, plat, scope, user_data_dir).removed


def uninstall_report(name: str, plat: Platform, scope: str = "user",
                     user_data_dir: Path | None = None,
                     custom: Location | None = None) -> Removal:
    """:func:`uninstall`, with a line for each manifest, launcher or key of ours left.

    With ``scope`` "user", manifests of ours found in the browsers' system folders are
    reported too (they need ``--system`` and root to remove).
    """
    result = Removal()
    locations = ([custom] if custom is not None
                 else uninstall_locations(name, plat, scope, user_data_dir))
    for location in locations:
        result.add(uninstall_at(location, plat))
    if custom is None and scope == "user" and user_data_dir is None:
        for location in uninstall_locations(name, plat, "system"):
            if location.registry is not None:
                value = _registry(plat).get(*location.registry)
                if value is not None and _file_name(value) == MANIFEST_NAME:
                    result.left.append((location.describe(), "a system-wide registration: "
                                        "run `flattr-host uninstall --system` as administrator"))
            elif location.manifest.exists():
                result.left.append((str(location.manifest), "system-wide: run `sudo "
                                    f"flattr-host uninstall --system --browser {name}`"))
    return result


# -- the data directory (uninstall --purge) ---------------------------------------------

# What the host keeps in its data directory (docs/configuration.md), and what each is.
DATA_ENTRIES = (
    ("token.key", "the key the access token is encrypted with"),
    ("host.db", "the store: token ciphertext, subscription state, queued flattrs (URLs)"),
    ("host.db-wal", "the store's write-ahead log"),
    ("host.db-shm", "the store's shared-memory index"),
    ("config.json", "settings"),
    ("logs", "the host's logs"),
    ("inspect", "live inspector sockets of running hosts"),
    ("inspect.secret", "the live inspector's secret"),
)


def _data_entry(name: str) -> str | None:
    for known, what in DATA_ENTRIES:
        if name == known:
            return what
    if name.startswith(("host.db.", "token.key.")):  # stores and keys set aside as broken
        return "a store or key the host set aside as unusable"
    return None


def data_dir_contents(home: Path) -> list[tuple[Path, str | None]]:
    """Each entry of the data directory with what it is (None: not the host's)."""
    try:
        names = sorted(os.listdir(home))
    except OSError:
        return []
    return [(home / name, _data_entry(name)) for name in names]


def purge_data_dir(home: Path) -> Removal:
    """Remove the host's entries from ``home`` and then ``home`` if empty.

    Anything the host did not create stays, and is reported: a data directory set
    by mistake to a folder holding other files loses nothing but our files.
    """
    result = Removal()
    for path, what in data_dir_contents(home):
        if what is None:
            result.left.append((str(path), "not created by the host"))
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            result.left.append((str(path), f"cannot remove it: {exc.strerror or exc}"))
            continue
        result.removed.append(str(path))
    try:
        home.rmdir()
        result.removed.append(str(home))
    except FileNotFoundError:
        pass
    except OSError as exc:
        result.left.append((str(home), f"kept: {exc.strerror or exc}"))
    return result
