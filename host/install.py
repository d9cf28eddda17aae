"""Browser host manifests: where each browser looks, writing and removing them.

Every supported browser reads a host manifest named ``com.flattr.companion.json``
from its own folder (Linux, macOS) or from the file a registry key names
(Windows). Locations come from the Chrome, Edge and MDN native messaging docs;
facts the docs leave open are cited where they are used (docs/install.md has the
full table). Search order matters: a browser uses the *first* manifest it finds
(Edge on Windows also reads Chrome's key), so every Chromium-family manifest we
write lists the same extension ids.

The manifest's ``path`` points at a launcher written beside it, filled in from
``manifests/launcher.*``: it runs this Python by absolute path (a browser started
from the macOS Dock or a desktop launcher has no shell PATH) and fixes the data
directory and the ``FLATTR_*`` settings in force at install time.

Sandboxed browsers: a Flatpak browser reads manifests inside its sandbox
(``~/.var/app/<id>/...``) and cannot see the host's Python; we install a second
launcher there that runs the real one through ``flatpak-spawn --host``, which needs
a permission only the user should grant (we print the exact command). Snap
Chromium/Brave cannot start programs outside the snap at all; Snap Firefox starts
hosts through the desktop portal from the normal user folder.

Idempotent: re-running writes identical files. Uninstall removes a launcher only
if it carries our mark, a manifest only if it points at such a launcher, a
registry key only if it names our manifest.
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
from flattr_host.config import CHROMIUM_EXTENSION_ID, ENV, FIREFOX_EXTENSION_ID
from flattr_host.errors import InstallError

MANIFEST_NAME = f"{HOST_NAME}.json"
LAUNCHER_NAME = f"{HOST_NAME}-launcher"
HOST_LAUNCHER_NAME = f"{HOST_NAME}-host-launcher"  # the real one, beside a Flatpak wrapper
LAUNCHER_MARK = "Written by `flattr-host install`"
TEMPLATES = Path(__file__).resolve().parent.parent / "manifests"

HKCU = "HKEY_CURRENT_USER"
HKLM = "HKEY_LOCAL_MACHINE"
FLATPAK_TALK = "org.freedesktop.Flatpak"

_CHROME_KEY = "Software\\Google\\Chrome\\NativeMessagingHosts"


@dataclass(frozen=True)
class BrowserInfo:
    """Where one browser keeps things, per platform (paths relative to HOME unless absolute)."""

    key: str
    label: str
    family: str  # "chromium" (allowed_origins) or "firefox" (allowed_extensions)
    linux_profile: str  # its user data dir; user manifests in <profile>/NativeMessagingHosts
    linux_system: str
    mac_profile: str
    mac_system: str
    mac_app: str
    win_profile: str  # relative to %LOCALAPPDATA% (Firefox: %APPDATA%), '/'-separated
    win_keys: tuple[str, ...]  # registry keys read, in order (the first found wins)
    commands: tuple[str, ...]  # names on PATH (Linux)
    flatpak_id: str
    flatpak_dir: str  # manifest folder relative to ~/.var/app/<id>/
    snap: str | None = None

    @property
    def win_key(self) -> str:
        """The key install writes: the browser's own, first in its search order."""
        return self.win_keys[0]


BROWSERS: dict[str, BrowserInfo] = {
    b.key: b
    for b in (
        BrowserInfo(
            "chrome", "Google Chrome", "chromium",
            ".config/google-chrome", "/etc/opt/chrome/native-messaging-hosts",
            "Library/Application Support/Google/Chrome",
            "/Library/Google/Chrome/NativeMessagingHosts",
            "/Applications/Google Chrome.app",
            "Google/Chrome/User Data", (_CHROME_KEY,),
            ("google-chrome", "google-chrome-stable"),
            "com.google.Chrome", "config/google-chrome/NativeMessagingHosts",
        ),
        BrowserInfo(
            "chromium", "Chromium", "chromium",
            ".config/chromium", "/etc/chromium/native-messaging-hosts",
            "Library/Application Support/Chromium",
            "/Library/Application Support/Chromium/NativeMessagingHosts",
            "/Applications/Chromium.app",
            "Chromium/User Data", ("Software\\Chromium\\NativeMessagingHosts",),
            ("chromium", "chromium-browser"),
            "org.chromium.Chromium", "config/chromium/NativeMessagingHosts",
            snap="chromium",
        ),
        BrowserInfo(
            # Edge reads its own key and, like every Chromium browser on Windows,
            # Chrome's (MicrosoftDocs/edge-developer#533); the first found wins.
            "edge", "Microsoft Edge", "chromium",
            ".config/microsoft-edge", "/etc/opt/edge/native-messaging-hosts",
            "Library/Application Support/Microsoft Edge",
            "/Library/Microsoft/Edge/NativeMessagingHosts",
            "/Applications/Microsoft Edge.app",
            "Microsoft/Edge/User Data",
            ("Software\\Microsoft\\Edge\\NativeMessagingHosts", _CHROME_KEY),
            ("microsoft-edge", "microsoft-edge-stable"),
            "com.microsoft.Edge", "config/microsoft-edge/NativeMessagingHosts",
        ),
        BrowserInfo(
            # On Windows Brave reads Chrome's key (keepassxc#2414).
            "brave", "Brave", "chromium",
            ".config/BraveSoftware/Brave-Browser", "/etc/opt/brave/native-messaging-hosts",
            "Library/Application Support/BraveSoftware/Brave-Browser",
            "/Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            "/Applications/Brave Browser.app",
            "BraveSoftware/Brave-Browser/User Data", (_CHROME_KEY,),
            ("brave-browser", "brave"),
            "com.brave.Browser", "config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            snap="brave",
        ),
        BrowserInfo(
            # On Windows Vivaldi reads Chrome's key (keepassxc-browser#48).
            "vivaldi", "Vivaldi", "chromium",
            ".config/vivaldi", "/etc/opt/vivaldi/native-messaging-hosts",
            "Library/Application Support/Vivaldi",
            "/Library/Application Support/Vivaldi/NativeMessagingHosts",
            "/Applications/Vivaldi.app",
            "Vivaldi/User Data", (_CHROME_KEY,),
            ("vivaldi", "vivaldi-stable"),
            "com.vivaldi.Vivaldi", "config/vivaldi/NativeMessagingHosts",
        ),
        BrowserInfo(
            "firefox", "Firefox", "firefox",
            ".mozilla", "/usr/lib/mozilla/native-messaging-hosts",
            "Library/Application Support/Mozilla",
            "/Library/Application Support/Mozilla/NativeMessagingHosts",
            "/Applications/Firefox.app",
            "Mozilla/Firefox", ("Software\\Mozilla\\NativeMessagingHosts",),
            ("firefox", "firefox-esr"),
            "org.mozilla.firefox", ".mozilla/native-messaging-hosts",
            snap="firefox",
        ),
    )
}


class Registry(Protocol):
    """The default values of registry keys (Windows); a dict stands in for it in tests."""

    def get(self, hive: str, key: str) -> str | None: ...

    def set(self, hive: str, key: str, value: str) -> None: ...

    def delete(self, hive: str, key: str) -> None: ...


class WinRegistry:
    """:class:`Registry` over ``winreg`` (imported only on Windows)."""

    def _winreg(self) -> Any:
        return import_module("winreg")

    def get(self, hive: str, key: str) -> str | None:
        winreg = self._winreg()
        try:
            with winreg.OpenKey(getattr(winreg, hive), key) as handle:
                value, _kind = winreg.QueryValueEx(handle, "")
        except OSError:
            return None
        return str(value)

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
    """

    browser: str
    scope: str  # "user", "system" or "profile" (--user-data-dir)
    folder: Path
    registry: tuple[str, str] | None = None
    flatpak: str | None = None

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_NAME

    def describe(self) -> str:
        if self.registry is not None:
            return f"{self.registry[0]}\\{self.registry[1]}"
        return str(self.manifest)


def browser_info(name: str) -> BrowserInfo:
    try:
        return BROWSERS[name]
    except KeyError:
        raise InstallError(f"unknown browser {name!r} (known: {', '.join(BROWSERS)}, all)") \
            from None


def _windows_folder(plat: Platform, info: BrowserInfo, scope: str) -> Path:
    # Windows keeps the manifest wherever the registry says; one folder per key,
    # so browsers sharing Chrome's key share one registration (docs/install.md).
    base = (plat.appdata("ProgramData", "ProgramData") if scope == "system"
            else plat.appdata("LOCALAPPDATA", "AppData/Local"))
    slug = info.win_key.split("\\")[-2].lower()
    return base / "flattr-companion" / "native-messaging" / slug


def _posix_user_folder(plat: Platform, info: BrowserInfo) -> Path:
    if plat.system == "darwin":
        base = plat.home / info.mac_profile
        return base / "NativeMessagingHosts"
    if info.family == "firefox":
        return plat.home / ".mozilla" / "native-messaging-hosts"
    return plat.home / info.linux_profile / "NativeMessagingHosts"


def target(name: str, plat: Platform, scope: str = "user",
           user_data_dir: Path | None = None) -> Location:
    """Where ``install`` writes for ``name`` in ``scope`` ("user" or "system")."""
    info = browser_info(name)
    if user_data_dir is not None:
        if info.family == "firefox":
            raise InstallError("Firefox reads host manifests per user, not per profile: "
                               "use --home DIR instead of --user-data-dir")
        if scope == "system":
            raise InstallError("--user-data-dir and --system do not go together")
        # A profile started with --user-data-dir reads user manifests only from
        # there (../shared/ENVIRONMENT.md), on every OS.
        return Location(name, "profile", user_data_dir / "NativeMessagingHosts")
    if plat.system == "win32":
        hive = HKLM if scope == "system" else HKCU
        return Location(name, scope, _windows_folder(plat, info, scope),
                        (hive, f"{info.win_key}\\{HOST_NAME}"))
    if scope == "system":
        folder = Path(info.mac_system if plat.system == "darwin" else info.linux_system)
        return Location(name, "system", folder)
    return Location(name, "user", _posix_user_folder(plat, info))


def search_order(name: str, plat: Platform, user_data_dir: Path | None = None) -> list[Location]:
    """Every place ``name`` reads a manifest from, in the order it looks (first found wins).

    Chromium: user level, then system (Chrome docs); Windows: HKCU then HKLM, for
    each key the browser reads. Firefox: user then system (MDN native manifests).
    """
    info = browser_info(name)
    if plat.system == "win32":
        out = []
        for key in info.win_keys:
            for hive, scope in ((HKCU, "user"), (HKLM, "system")):
                folder = _windows_folder(plat, BROWSERS[_owner_of_key(key)], scope)
                out.append(Location(name, scope, folder, (hive, f"{key}\\{HOST_NAME}")))
        return out
    first = target(name, plat, "user", user_data_dir)
    out = [first, target(name, plat, "system")]
    if plat.system == "linux" and info.family == "firefox":
        out.append(Location(name, "system", Path("/usr/lib64/mozilla/native-messaging-hosts")))
    return out


def _owner_of_key(key: str) -> str:
    """The browser whose own key ``key`` is (Chrome's key belongs to chrome)."""
    for info in BROWSERS.values():
        if info.win_key == key:
            return info.key
    return "chrome"  # pragma: no cover - every key in the table has an owner


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
            hit = plat.exists(Path(info.mac_app)) or plat.exists(plat.home / info.mac_profile)
        else:
            hit = (any(plat.which(cmd) for cmd in info.commands)
                   or plat.exists(plat.home / info.linux_profile))
        if hit:
            found.append(info.key)
    return found


def flatpak_override_granted(plat: Platform, app: str) -> bool:
    """True if the user or the system let ``app`` talk to org.freedesktop.Flatpak."""
    data = Path(plat.env.get("XDG_DATA_HOME") or plat.home / ".local" / "share")
    for path in (data / "flatpak" / "overrides" / app, Path("/var/lib/flatpak/overrides") / app):
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
                                         Path("/var/lib/flatpak/app") / app)):
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
        if info.snap and (plat.exists(Path("/snap") / info.snap)
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
    path = TEMPLATES / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstallError(f"template {path} missing ({exc.strerror or exc}); "
                           "reinstall flattr-companion from its source tree") from None


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
    """The host manifest for ``family``, from ``manifests/<family>.json``."""
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
    """The launcher text from ``manifests/launcher.sh`` or ``launcher.cmd``."""
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
    package from its folder, wherever it is installed, then runs the CLI.
    """
    import sysconfig

    package = os.path.dirname(os.path.abspath(__file__))
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
        "from flattr_host.cli import main;sys.exit(main())"
    )


def flatpak_wrapper(host_launcher: Path, app: str, browser: str) -> str:
    return (_template("launcher-flatpak.sh").replace("@VERSION@", __version__)
            .replace("@BROWSER@", browser).replace("@APP_ID@", app)
            .replace("@HOST_LAUNCHER@", shlex.quote(str(host_launcher))))


def _cmd_escape(value: str) -> str:
    if '"' in value:
        raise InstallError(f"cannot put {value!r} in a Windows launcher: it holds a quote")
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
    info = browser_info(location.browser)
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
            changed |= _write_if_changed(real, launcher_script(python, environment, info.key),
                                         0o755)
            changed |= _write_if_changed(launcher, flatpak_wrapper(real, location.flatpak,
                                                                   info.key), 0o755)
        else:
            changed |= _write_if_changed(launcher, launcher_script(python, environment, info.key,
                                                                   windows), 0o755)
        body = manifest_body(info.family, launcher, extension_ids)
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
    """Install for ``name`` (or ``all``): the browser's own folder, plus its Flatpak sandbox.

    Sandboxed installs that cannot be reached come back as notes on the result.
    """
    results = []
    for browser in resolve_browsers(name, plat):
        normal = browser in detect(plat) or name != "all" or user_data_dir is not None
        boxes = [] if user_data_dir is not None or scope == "system" else sandboxes(plat, [browser])
        if normal:
            results.append(install_at(target(browser, plat, scope, user_data_dir), plat,
                                      extension_ids, data_home, python))
        for box in boxes:
            if box.location is not None:
                done = install_at(box.location, plat, extension_ids, data_home, python)
                done.notes.append(box.advice)
                results.append(done)
            elif results:
                results[-1].notes.append(box.advice)
            else:
                raise InstallError(box.advice)
    return results


def owned_launcher(path: Path) -> bool:
    """True if ``path`` is a launcher ``flattr-host install`` wrote."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return LAUNCHER_MARK in handle.read(4096)
    except OSError:
        return False


def uninstall_at(location: Location, plat: Platform) -> list[str]:
    """Remove what install wrote at ``location``; returns what was removed."""
    removed: list[str] = []
    windows = plat.system == "win32"
    launcher = launcher_path(location, windows)
    manifest = location.manifest
    if manifest.exists():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        path = data.get("path") if isinstance(data, dict) else None
        if isinstance(path, str) and Path(path) == launcher and owned_launcher(launcher):
            manifest.unlink()
            removed.append(str(manifest))
    for path in (launcher, location.folder / HOST_LAUNCHER_NAME):
        if path.exists() and owned_launcher(path):
            path.unlink()
            removed.append(str(path))
    if location.registry is not None:
        registry = _registry(plat)
        hive, key = location.registry
        if registry.get(hive, key) == str(manifest):
            registry.delete(hive, key)
            removed.append(f"{hive}\\{key}")
    return removed


def uninstall(name: str, plat: Platform, scope: str = "user",
              user_data_dir: Path | None = None) -> list[str]:
    """Remove what :func:`install` wrote for ``name`` (or ``all``) in ``scope``."""
    names = list(BROWSERS) if name == "all" else [name]
    removed: list[str] = []
    for browser in names:
        locations = [target(browser, plat, scope, user_data_dir)]
        if user_data_dir is None and scope == "user":
            locations += [b.location for b in sandboxes(plat, [browser]) if b.location]
        for location in locations:
            removed += [r for r in uninstall_at(location, plat) if r not in removed]
    return removed


def sharing(location: Location) -> list[str]:
    """Other browsers that read the same registration (Windows: Chrome's key)."""
    if location.registry is None:
        return []
    key = location.registry[1].rsplit("\\", 1)[0]
    return [b.key for b in BROWSERS.values() if key in b.win_keys and b.key != location.browser]
