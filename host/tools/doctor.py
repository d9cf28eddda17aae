"""``flattr-host doctor``: check every link between a browser and a working host.

For each browser: the manifest is present in the folder (or registry key) that
browser reads first, is valid JSON, names this host, is of type stdio, points at
an absolute, executable launcher, allows the extension, and the launcher -- run
exactly as the browser runs it (its argv, cwd = the launcher's folder) -- answers
``hello`` within a time limit. Then, once: data directory permissions (0700 and
0600), the store opens read-only, which backend holds the token's key (the OS
keyring or the file) and why, the stored token decrypts (it is never printed),
and the API answers over HTTPS with the configured CA bundle.

Each check prints ``ok`` or ``FAIL`` with the exact fix; a browser's chain stops
at its first failure (later links cannot be judged). Exit status 0 only if every
check passed. Doctor never writes to the data directory itself; the hello check
runs the real host, which creates the store the way a browser launch would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flattr_host import HOST_NAME, PROTOCOL_VERSION
from flattr_host.core import config as config_mod
from flattr_host.protocol import framing
from flattr_host.tools import install as inst

MANIFEST_PRESENT = "manifest present"
VALID_JSON = "valid JSON"
NAME_MATCHES = "name matches"
TYPE_STDIO = "type is stdio"
PATH_EXECUTABLE = "path absolute and executable"
EXTENSION_ALLOWED = "extension id allowed"
HELLO = "launcher answers hello"
FLATPAK_PERMISSION = "flatpak permission"
DATA_PERMISSIONS = "data directory permissions"
STORE_READABLE = "store readable"
TOKEN_KEY = "token key"  # noqa: S105 - a check name
TOKEN_DECRYPTABLE = "token decryptable"  # noqa: S105 - a check name
NO_PROBLEM = "no problem reported"
API_REACHABLE = "API reachable"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Section:
    title: str
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


# -- the browser chain ---------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    location: inst.Location
    manifest: Path


def find_manifest(browser: str, plat: inst.Platform, user_data_dir: Path | None,
                  custom: inst.Location | None = None
                  ) -> tuple[Found | None, list[inst.Location]]:
    """The manifest ``browser`` would use (first in its search order), and the order.

    ``custom`` is a ``--manifest-dir`` location: the only place looked at.
    """
    if custom is not None:
        return (Found(custom, custom.manifest) if custom.manifest.exists() else None), [custom]
    order = inst.search_order(browser, plat, user_data_dir)
    boxes = [b.location for b in inst.sandboxes(plat, [browser]) if b.location is not None]
    if user_data_dir is None:
        # A Flatpak browser reads only inside its sandbox.
        order = boxes + order if boxes and browser not in inst.detect(plat) else order + boxes
    for location in order:
        if location.registry is not None:
            assert plat.registry is not None
            value = plat.registry.get(*location.registry)
            if value is not None:
                return Found(location, Path(value)), order
        elif location.manifest.exists():
            return Found(location, location.manifest), order
    return None, order


def _install_command(browser: str, options: Any, extra: str = "") -> str:
    parts = ["flattr-host", "install"]
    custom = getattr(options, "manifest_dir", None)
    if custom is not None:
        parts += ["--manifest-dir", str(custom), "--family", _family(options)]
    else:
        parts += ["--browser", browser]
    if getattr(options, "scope", "user") == "system":
        parts.append("--system")
    if getattr(options, "user_data_dir", None) is not None:
        parts += ["--user-data-dir", str(options.user_data_dir)]
    if getattr(options, "home", None) is not None:
        parts += ["--home", str(options.home)]
    return shlex.join(parts) + extra


def _family(options: Any) -> str:
    """The manifest family of a ``--manifest-dir`` check: --family, else --browser's."""
    family = getattr(options, "family", None)
    if family:
        return str(family)
    browser = getattr(options, "browser", None)
    if browser in inst.BROWSERS:
        return inst.BROWSERS[browser].family
    return "chromium"


def custom_location(options: Any, plat: inst.Platform) -> inst.Location | None:
    """The ``--manifest-dir`` location of ``options``, if any."""
    folder = getattr(options, "manifest_dir", None)
    return None if folder is None else inst.custom_location(Path(folder), _family(options), plat)


def _elsewhere(browser: str, plat: inst.Platform) -> str:
    """A hint when our manifest sits in another browser's folder (the classic mistake),
    or in the Firefox system folder this Firefox build does not read."""
    if plat.system == "win32":
        return ""
    if browser == "firefox" and plat.system == "linux":
        used = (inst.firefox_system_folder(plat)
                or plat.at(inst.BROWSERS["firefox"].linux_system[1]))
        for raw in inst.BROWSERS["firefox"].linux_system:
            stray = plat.at(raw) / inst.MANIFEST_NAME
            if plat.at(raw) != used and stray.exists():
                return (f"; there is one in {stray}, but this Firefox build reads only "
                        f"{used} (fixed when it was built)")
    for other in inst.BROWSERS:
        if other == browser:
            continue
        for scope in ("user", "system"):
            location = inst.target(other, plat, scope)
            if location.manifest.exists():
                return (f"; there is one in {other}'s folder ({location.manifest}), which "
                        f"{browser} does not read")
    return ""


def check_browser(browser: str, plat: inst.Platform, options: Any, ids: list[str],
                  timeout: float, environ: Mapping[str, str] | None = None) -> Section:
    """Every link for one browser, stopping at the first broken one."""
    section = Section(browser)
    custom = custom_location(options, plat)
    family = custom.manifest_family if custom is not None else inst.browser_info(browser).family
    found, order = find_manifest(browser, plat, options.user_data_dir, custom)
    fix = _install_command(browser, options)
    names = [MANIFEST_PRESENT, VALID_JSON, NAME_MATCHES, TYPE_STDIO, PATH_EXECUTABLE,
             EXTENSION_ALLOWED, HELLO]

    def done(check: Check) -> bool:
        section.checks.append(check)
        if not check.ok:
            section.skipped = names[names.index(check.name) + 1:]
        return check.ok

    if found is None:
        places = ", ".join(loc.describe() for loc in order)
        done(Check(MANIFEST_PRESENT, False,
                   f"no {HOST_NAME} manifest where {browser} looks ({places})"
                   + ("" if custom else _elsewhere(browser, plat)), f"run `{fix}`"))
        return section
    where = found.location.describe()
    if not found.manifest.exists():
        done(Check(MANIFEST_PRESENT, False,
                   f"{where} names {found.manifest}, which does not exist", f"run `{fix}`"))
        return section
    section.title = f"{browser} ({found.manifest})"
    if not done(Check(MANIFEST_PRESENT, True, str(found.manifest))):
        return section
    try:
        data = json.loads(found.manifest.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"top level is {type(data).__name__}, not an object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        done(Check(VALID_JSON, False, f"{found.manifest}: {exc}", f"run `{fix}`"))
        return section
    done(Check(VALID_JSON, True, "parsed"))
    name = data.get("name")
    if not done(Check(NAME_MATCHES, name == HOST_NAME,
                      f"name is {name!r}" + ("" if name == HOST_NAME else f", not {HOST_NAME!r}"),
                      f"run `{fix}`")):
        return section
    kind = data.get("type")
    if not done(Check(TYPE_STDIO, kind == "stdio", f"type is {kind!r}", f"run `{fix}`")):
        return section
    launcher, problem = _launcher_problem(data.get("path"), found.manifest, plat)
    if not done(Check(PATH_EXECUTABLE, problem is None, problem or str(launcher),
                      f"run `{fix}`")):
        return section
    assert launcher is not None
    key = "allowed_origins" if family == "chromium" else "allowed_extensions"
    allowed = data.get(key)
    wanted = [f"chrome-extension://{i}/" for i in ids] if family == "chromium" else ids
    missing = [w for w in wanted if not isinstance(allowed, list) or w not in allowed]
    id_fix = f"run `{fix}" + "".join(f" --extension-id {i}" for i in ids) + "`"
    if not done(Check(EXTENSION_ALLOWED, not missing,
                      f"{key} lacks {', '.join(missing)}" if missing
                      else f"{key} has {', '.join(wanted)}", id_fix)):
        return section
    if found.location.flatpak is not None:
        # The wrapper needs flatpak-spawn inside the sandbox; test the real launcher.
        app = found.location.flatpak
        granted = inst.flatpak_override_granted(plat, app)
        section.checks.append(Check(FLATPAK_PERMISSION, granted,
                                    f"{app} may talk to {inst.FLATPAK_TALK}" if granted
                                    else f"{app} may not start programs outside its sandbox",
                                    f"run `{inst.flatpak_command(app)}` and restart the browser"))
        launcher = found.location.folder / inst.HOST_LAUNCHER_NAME
    args = ([str(found.manifest), ids[0]] if family == "firefox"
            else [f"chrome-extension://{ids[0]}/"]
            + (["--parent-window=0"] if plat.system == "win32" else []))
    done(check_hello(launcher, args, ids[0], timeout, fix, environ))
    return section


def _launcher_problem(raw: object, manifest: Path,
                      plat: inst.Platform) -> tuple[Path | None, str | None]:
    if not isinstance(raw, str) or not raw:
        return None, f"path is {raw!r}, not a file path"
    path = Path(raw)
    if not path.is_absolute():
        if plat.system != "win32":
            return None, f"path {raw!r} is relative; Linux and macOS need an absolute path"
        path = manifest.parent / path  # Windows resolves it against the manifest's folder
    if not path.is_file():
        return path, f"{path} does not exist"
    if plat.system != "win32" and not os.access(path, os.X_OK):
        return path, f"{path} is not executable"
    return path, None


def _read_frame(stream: Any, out: list[Any]) -> None:
    """Read the host's first frame with the host's own codec (:mod:`flattr_host.protocol.framing`):
    append its payload (bytes) to ``out``, or the :class:`FrameError` or
    :class:`OSError` that stopped it; nothing at a clean end of stream."""
    from flattr_host.core.errors import FrameError

    decoder = framing.Decoder(framing.OUTBOUND_LIMIT)  # what a browser accepts
    try:
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                decoder.close()
                return
            payloads = decoder.feed(chunk)
            if payloads:
                out.append(payloads[0])
                return
    except (FrameError, OSError, ValueError) as exc:  # ValueError: pipe closed under us
        out.append(exc)


def check_hello(launcher: Path, args: list[str], extension_id: str, timeout: float,
                fix: str, environ: Mapping[str, str] | None = None) -> Check:
    """Run ``launcher`` as a browser would (``environ``: the browser's environment) and
    wait ``timeout`` seconds for the hello reply."""
    hello = {"id": 1, "type": "hello",
             "extension": {"id": extension_id, "version": "doctor", "build": "doctor"}}
    try:
        proc = subprocess.Popen([str(launcher), *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=str(launcher.parent),
                                env=None if environ is None else dict(environ))
    except OSError as exc:
        return Check(HELLO, False, f"cannot start {launcher}: {exc.strerror or exc}",
                     f"run `{fix}`")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    got: list[Any] = []
    reader = threading.Thread(target=_read_frame, args=(proc.stdout, got), daemon=True)
    reader.start()
    try:
        proc.stdin.write(framing.encode(hello))
        proc.stdin.flush()
    except OSError:
        pass
    reader.join(timeout)
    timed_out = reader.is_alive()
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(0.1 if timed_out else timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stderr = proc.stderr.read().decode("utf-8", errors="replace").strip()
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    last = stderr.splitlines()[-1][:300] if stderr else ""
    if not got:
        if timed_out:
            return Check(HELLO, False, f"no reply within {timeout:g} s",
                         "see `flattr-host logs --level warning`; re-run with --timeout 30 on "
                         "a slow machine")
        why = f" ({last})" if last else ""
        return Check(HELLO, False, f"exited with status {proc.returncode} before answering{why}",
                     _hello_fix(last, extension_id, fix))
    if isinstance(got[0], Exception):
        return Check(HELLO, False, f"the reply is not a native messaging frame ({got[0]})",
                     f"make sure nothing but the host writes to its stdout; run `{fix}`")
    from flattr_host.core.errors import InvalidFrame

    try:
        reply = framing.parse_payload(got[0])
        version = reply["result"]["host"]["protocol"] if reply.get("ok") else None
    except (InvalidFrame, TypeError, KeyError):
        return Check(HELLO, False, "the reply is not a protocol reply", f"run `{fix}`")
    if version != PROTOCOL_VERSION:
        return Check(HELLO, False, f"unexpected reply {str(reply)[:200]}",
                     "reinstall flattr-companion so host and extension match")
    return Check(HELLO, True, f"protocol {version}, host {reply['result']['host']['version']}")


def _hello_fix(stderr_line: str, extension_id: str, fix: str) -> str:
    if "not allowed" in stderr_line:
        return (f"the host's configuration does not allow {extension_id}: run `{fix} "
                f"--extension-id {extension_id}` (or add it to FLATTR_ALLOWED_EXTENSIONS)")
    if "No module named" in stderr_line or "not found" in stderr_line:
        return f"the launcher's Python cannot run flattr_host: run `{fix}` with the right Python"
    return f"see `flattr-host logs --level warning`; run `{fix}`"


# -- the data directory, the store, the token, the API --------------------------------

def launcher_settings(launcher: Path) -> dict[str, str]:
    """The ``FLATTR_*`` defaults a launcher written by install fixes."""
    try:
        text = launcher.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for match in re.finditer(r'^if \[ -z "\$\{(\w+):-\}" \]; then \w+=(.*); export \w+; fi$',
                             text, re.M):
        try:
            out[match.group(1)] = shlex.split(match.group(2))[0]
        except (ValueError, IndexError):
            continue
    for match in re.finditer(r'^if not defined (\w+) set "\w+=(.*)"\r?$', text, re.M):
        out[match.group(1)] = match.group(2).replace("%%", "%")
    return out


def check_permissions(home: Path) -> Check:
    if not home.exists():
        return Check(DATA_PERMISSIONS, True, f"{home} not created yet (the host creates it)")
    if os.name != "posix":
        return Check(DATA_PERMISSIONS, True, f"{home} (modes not checked on this OS)")
    loose: list[str] = []
    dirs = [home] + [p for p in (home / "logs", home / "inspect", home / "health")
                    if p.is_dir()]
    for folder in dirs:
        if folder.stat().st_mode & 0o077:
            loose.append(f"chmod 700 {shlex.quote(str(folder))}")
        for path in folder.iterdir():
            if path.is_file() and path.stat().st_mode & 0o077:
                loose.append(f"chmod 600 {shlex.quote(str(path))}")
    if loose:
        return Check(DATA_PERMISSIONS, False,
                     f"{len(loose)} entries readable by others under {home}", "; ".join(loose))
    return Check(DATA_PERMISSIONS, True, f"{home} is 0700, its files 0600")


def _open_ro(db: Path) -> Any:
    import sqlite3

    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)


def check_store(db: Path) -> Check:
    import sqlite3

    from flattr_host.storage.store import MIGRATIONS

    if not db.exists():
        return Check(STORE_READABLE, True, f"{db} not created yet (the host creates it)")
    aside = f"mv {shlex.quote(str(db))} {shlex.quote(str(db) + '.broken')}"
    try:
        conn = _open_ro(db)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM queue").fetchone()
            conn.execute("SELECT count(*) FROM token").fetchone()
            damage = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(5)")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        from flattr_host.storage.store import is_corruption_error

        if is_corruption_error(exc):
            damage = [str(exc)]
        else:
            return Check(STORE_READABLE, False, f"{db}: {exc}",
                         f"move it aside with `{aside}` (the host starts a fresh store; "
                         "flattrs queued in it are lost)")
    if damage != ["ok"]:
        return Check(STORE_READABLE, False, f"{db} is damaged: {'; '.join(damage)[:300]}",
                     "start the browser: the host keeps a copy (host.db.corrupt-*), "
                     "salvages the pending flattrs and starts a fresh store (signed out); "
                     f"or move it aside yourself with `{aside}`")
    if version > len(MIGRATIONS):
        return Check(STORE_READABLE, False,
                     f"{db} has schema {version}, newer than this host's {len(MIGRATIONS)}",
                     "upgrade flattr-companion")
    return Check(STORE_READABLE, True, f"{db} (schema {version})")


def _read_kv(db: Path) -> tuple[dict[str, str], bool]:
    """(the key's kv rows, whether a token row exists), read-only."""
    conn = _open_ro(db)
    try:
        rows = dict(conn.execute("SELECT key, value FROM kv WHERE key IN "
                                 "('key_backend', 'key_reason')").fetchall())
        token = conn.execute("SELECT 1 FROM token WHERE id = 1").fetchone() is not None
    finally:
        conn.close()
    return rows, token


def check_key(db: Path, key_path: Path, mode: str,
              keyring_factory: Any = None) -> tuple[Check, tuple[bytes | None, str | None]]:
    """Which backend holds the token's key and why; (check, (key, backend)) for
    :func:`check_token`. Looks in the keyring without creating or moving anything."""
    import sqlite3

    from flattr_host.storage import keys

    factory = keyring_factory or keys.default_keyring
    key, backend, reason = keys.peek(str(key_path), mode, factory)
    recorded: dict[str, str] = {}
    has_token = False
    if db.exists():
        try:
            recorded, has_token = _read_kv(db)
        except sqlite3.Error:
            pass
    noted = recorded.get("key_backend")
    why = f"; the host noted: {recorded['key_reason']}" if recorded.get("key_reason") else ""
    unlock = ("unlock the keyring (log in to the desktop session; for a headless session "
              "run `gnome-keyring-daemon --unlock`), or sign in again on flattr.com: the "
              "host then keeps a new key"
              + (" in token.key" if mode == "auto" else ""))
    if key is not None:
        return Check(TOKEN_KEY, True, f"{backend} (key_backend {mode}: {reason}){why}"), \
            (key, backend)
    if noted in keys.KEYRING_BACKENDS and has_token:
        return Check(TOKEN_KEY, False, f"the host keeps the key in {noted}, but {reason}",
                     unlock), (None, None)
    if backend == "file":  # a key file that is not a key
        return Check(TOKEN_KEY, not has_token, reason,
                     "sign in again on flattr.com (the host sets the broken file aside)"), \
            (None, None)
    if has_token:
        return Check(TOKEN_KEY, False, f"no key for the stored token ({reason})",
                     unlock if mode != "file" else "sign in again on flattr.com"), (None, None)
    return Check(TOKEN_KEY, True, f"none yet: made at the first sign-in (key_backend {mode}: "
                                  f"{reason})"), (None, None)


def check_token(db: Path, key_path: Path,
                found: tuple[bytes | None, str | None] | None = None) -> Check:
    """Decrypt the stored token without printing or keeping it. ``found``: the key and
    its backend from :func:`check_key`; without it, the key file is read."""
    import sqlite3

    from flattr_host.storage.token_store import TokenUnreadable, read_sealed, unseal

    sign_in = "sign in again on flattr.com (the host sets the unusable token aside)"
    if not db.exists():
        return Check(TOKEN_DECRYPTABLE, True, "no token stored (signed out)")
    try:
        conn = _open_ro(db)
        try:
            row = read_sealed(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check(TOKEN_DECRYPTABLE, False, f"cannot read the token row: {exc}",
                     "fix the store first")
    if row is None:
        return Check(TOKEN_DECRYPTABLE, True, "no token stored (signed out)")
    where = str(key_path)
    if found is not None:
        key, backend = found
        if key is None:
            return Check(TOKEN_DECRYPTABLE, False, "no usable key (see the token key check)",
                         sign_in)
        where = str(key_path) if backend == "file" else f"the key in {backend}"
    else:
        try:
            key = key_path.read_bytes()
        except OSError as exc:
            return Check(TOKEN_DECRYPTABLE, False, f"{key_path}: {exc.strerror or exc}",
                         sign_in)
    try:
        unseal(key, *row)  # the token store's own code; nothing is kept or set aside
    except TokenUnreadable as exc:
        what = (f"the token was encrypted with another key than {where}" if exc.wrong_key
                else "the stored token fails authentication")
        return Check(TOKEN_DECRYPTABLE, False, what, sign_in)
    return Check(TOKEN_DECRYPTABLE, True, "the stored token decrypts (not shown)")


def check_problems(db: Path, home: Path) -> Check:
    """The store's problem note and the problems of running hosts (flattr_host.core.health)."""
    import sqlite3

    from flattr_host.core import health

    found: list[str] = []
    fixes: list[str] = []
    if db.exists():
        try:
            conn = _open_ro(db)
            try:
                note = health.read_store_problem(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            note = None  # the store check reports it
        if note is not None:
            found.append(str(note.get("message")))
            fixes.append("sign in again on flattr.com (that clears the note)")
    for problem in health.running_problems(home):
        found.append(f"host {problem.get('pid')}: {problem.get('message')}")
        fixes.append("see `flattr-host logs --level error`; the host retries by itself, "
                     "restarting the browser restarts it")
    if found:
        return Check(NO_PROBLEM, False, "; ".join(found)[:600], "; ".join(dict.fromkeys(fixes)))
    return Check(NO_PROBLEM, True, "none")


def check_api(base: str, ca_bundle: str | None, timeout: float,
              environ: Mapping[str, str] | None = None) -> Check:
    """Any HTTP answer from ``GET <base>/rest/v2/rate_limit`` (not rate limited) is ok.

    The request goes the way the host's goes: through the proxy ``HTTPS_PROXY``
    names unless ``NO_PROXY`` matches (flattr_host.delivery.proxy); the detail says which.
    """
    import http.client
    import ssl
    from urllib.parse import urlsplit

    from flattr_host.core.errors import ConfigError
    from flattr_host.delivery.proxy import proxy_for

    parts = urlsplit(base)
    url = base.rstrip("/") + "/rest/v2/rate_limit"
    env = os.environ if environ is None else environ
    try:
        proxy = proxy_for(parts.scheme, parts.hostname or "", parts.port, env)
    except ConfigError as exc:
        return Check(API_REACHABLE, False, str(exc), "fix or unset the proxy variable")
    route = f"via proxy {proxy.describe()}" if proxy else "direct (no proxy applies)"
    fix = (f"check the network and FLATTR_API_BASE (now {base})"
           + (f" and the proxy ({proxy.describe()})" if proxy else "")
           + ("" if parts.scheme != "https" else
              f"; for a private CA set FLATTR_CA_BUNDLE (now {ca_bundle or 'unset'})"))
    address = (proxy.host, proxy.port) if proxy else (parts.hostname or "", parts.port)
    try:
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if ca_bundle:
                context.load_verify_locations(cafile=ca_bundle)
            conn = http.client.HTTPSConnection(*address, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(*address, timeout=timeout)
        if proxy is not None:
            conn.set_tunnel(parts.hostname or "", parts.port, headers=(
                {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None))
        try:
            conn.request("GET", parts.path.rstrip("/") + "/rest/v2/rate_limit",
                         headers={"User-Agent": "flattr-companion-doctor"})
            status = conn.getresponse().status
        finally:
            conn.close()
    except ssl.SSLError as exc:
        return Check(API_REACHABLE, False, f"{url} {route}: TLS failed: {exc}",
                     f"set FLATTR_CA_BUNDLE to the CA file that signs {parts.hostname}")
    except (OSError, http.client.HTTPException) as exc:
        return Check(API_REACHABLE, False, f"{url} {route}: {type(exc).__name__}: {exc}", fix)
    return Check(API_REACHABLE, True, f"HTTP {status} from {url} {route}")


# -- running it ----------------------------------------------------------------------

def browsers_to_check(plat: inst.Platform, options: Any) -> list[str]:
    if getattr(options, "manifest_dir", None) is not None:
        return [inst.CUSTOM]
    if options.browser and options.browser != "all":
        inst.browser_info(options.browser)
        return [options.browser]
    if options.user_data_dir is not None:
        return ["chromium"]
    found = inst.detect(plat) + [s.browser for s in inst.sandboxes(plat)]
    found += [b for b in inst.BROWSERS if find_manifest(b, plat, None)[0] is not None]
    return list(dict.fromkeys(found)) or ["chromium"]


def run(options: Any, plat: inst.Platform, environ: Mapping[str, str],
        out: TextIO) -> bool:
    """Run every check, print the report to ``out``; True if all passed."""
    timeout = float(getattr(options, "timeout", 5.0))
    chromium_ids, firefox_ids = inst.split_ids(getattr(options, "extension_ids", None))
    browsers = browsers_to_check(plat, options)
    launchers: list[Path] = []
    custom = custom_location(options, plat)
    for browser in browsers:
        found, _ = find_manifest(browser, plat, options.user_data_dir, custom)
        if found is not None:
            launchers.append(found.location.folder / (
                inst.HOST_LAUNCHER_NAME if found.location.flatpak else
                inst.launcher_path(found.location, plat.system == "win32").name))
    # The data directory is the one the launcher fixes, unless the environment
    # overrides it (the launcher lets the browser's environment win). It is checked
    # before any launcher runs: a started host tightens modes and sets a broken
    # store aside, which would hide what the user has.
    env = launcher_settings(launchers[0]) if launchers else {}
    env.update(environ)
    config = config_mod.load(env)
    data = Section(f"data directory {config.home}")
    store = check_store(Path(config.db_path))
    data.checks += [check_permissions(Path(config.home)), store]
    if store.ok:
        from flattr_host.storage import keys

        bus = env.get("DBUS_SESSION_BUS_ADDRESS")
        key_check, key_found = check_key(Path(config.db_path), Path(config.key_path),
                                     config.key_backend,
                                     lambda home: keys.default_keyring(home, bus))
        data.checks.append(key_check)
        data.checks.append(check_token(Path(config.db_path), Path(config.key_path),
                                       key_found))
    else:
        data.skipped += [TOKEN_KEY, TOKEN_DECRYPTABLE]
    data.checks.append(check_problems(Path(config.db_path), Path(config.home)))
    sections: list[Section] = []
    for browser in browsers:
        family = custom.manifest_family if custom else inst.browser_info(browser).family
        ids = firefox_ids if family == "firefox" else chromium_ids
        sections.append(check_browser(browser, plat, options, ids, timeout, environ))
    sections.append(data)
    if not getattr(options, "skip_api", False):
        sections.append(Section("api", [check_api(config.api_base, config.ca_bundle, timeout,
                                                  environ)]))
    for plat_box in inst.sandboxes(plat):
        if plat_box.kind == "snap":
            out.write(f"note: {plat_box.advice}\n")
    failed = 0
    for section in sections:
        out.write(f"{section.title}\n")
        for check in section.checks:
            out.write(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}\n")
            if not check.ok:
                failed += 1
                out.write(f"        fix: {check.fix}\n")
        for name in section.skipped:
            out.write(f"  --    {name}: not checked (an earlier link is broken)\n")
    out.write("all checks passed\n" if not failed else f"{failed} check(s) failed\n")
    return failed == 0


def main(options: Any) -> int:
    plat = inst.current_platform(options.home)
    return 0 if run(options, plat, os.environ, sys.stdout) else 1
