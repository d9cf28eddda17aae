"""Launch Debian's firefox-esr headless for tests and drive it over WebDriver BiDi.

No geckodriver and no Playwright Firefox (it needs Playwright's patched build):
Firefox serves WebDriver BiDi itself when started with `--remote-debugging-port`
(docs/firefox.md). Every launch gets a fresh profile and a fresh
HOME under a caller-owned temporary folder, so nothing leaks between tests and the
native messaging manifests the test installs are the only ones Firefox sees besides
the system folders.

Contract of :func:`launch_firefox`:
- yields a :class:`Firefox` whose BiDi session is already open;
- on exit ends the session, then terminates the whole process group (content
  processes and native hosts Firefox started included): SIGTERM, then SIGKILL after
  a grace period. Nothing it started outlives the `with` block;
- raises :class:`FirefoxLaunchError` with the tail of Firefox's output when the
  browser does not come up within `start_timeout` seconds.

Reaching https://flattr.com: pass `proxy_port` of a :class:`~flattr_testing.connect_proxy.
ConnectProxy`; the profile then sends every http/https request to it. The fake CA is
trusted one way only: imported into the profile's certificate database as a trusted
root before Firefox starts (`trusted_ca_pem`, :func:`import_ca_certificate`; see
docs/firefox.md for why this was chosen over certificate overrides,
acceptInsecureCerts or enterprise policies).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flattr_testing.bidi import DEFAULT_TIMEOUT, BidiError, BidiSession

__all__ = [
    "FIREFOX_ENV",
    "TEST_PREFS",
    "Firefox",
    "FirefoxLaunchError",
    "find_firefox",
    "firefox_skip_reason",
    "firefox_version",
    "import_ca_certificate",
    "install_native_manifests",
    "launch_firefox",
    "native_messaging_dir",
    "proxy_prefs",
    "write_user_js",
]

# Override the browser binary (e.g. a Firefox Nightly) without code changes.
FIREFOX_ENV = "FLATTR_FIREFOX"
DEFAULT_EXECUTABLE = "firefox-esr"
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of the process group
_LISTENING = re.compile(r"WebDriver BiDi listening on (ws://[\w.:\[\]-]+)")

Pref = bool | int | str

# Prefs every test profile gets. The remote agent already applies its own
# "recommended preferences" (no first-run pages, no update checks, ...); these add
# what the project relies on, each with its reason.
TEST_PREFS: dict[str, Pref] = {
    # The MV3 background is an event page; keep it alive for the whole test instead of
    # the default 30 s idle suspension (an open connectNative port keeps it alive too).
    "extensions.background.idle.timeout": 3_600_000,
    # No network traffic except what the test sends: telemetry, updates, safe browsing,
    # captive portal and connectivity probes all off.
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "app.update.auto": False,
    "app.update.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.newtabpage.enabled": False,
    "browser.startup.page": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.aboutwelcome.enabled": False,
    "trailhead.firstrun.didSeeAboutWelcome": True,
    # Plain-http checks (hostile origins) must not be upgraded; flattr.com must not be
    # HSTS-preloaded, because certificate overrides are refused for HSTS hosts.
    "dom.security.https_first": False,
    "dom.security.https_first_schemeless": False,
    "dom.security.https_only_mode": False,
    "network.stricttransportsecurity.preloadlist": False,
    # Not honoured by release/ESR builds for permanent installs; harmless, and
    # temporary installs over BiDi need no signature anyway.
    "xpinstall.signatures.required": False,
    # A crash of one test browser must not turn the next start into a safe-mode prompt.
    "toolkit.startup.max_resumed_crashes": -1,
    "browser.sessionstore.resume_from_crash": False,
}


class FirefoxLaunchError(BidiError):
    """Firefox is missing, exited early, or did not open BiDi in time."""


def find_firefox() -> str | None:
    """Absolute path of the Firefox binary ($FLATTR_FIREFOX or firefox-esr), or None."""
    configured = os.environ.get(FIREFOX_ENV, DEFAULT_EXECUTABLE)
    return shutil.which(configured)


def firefox_version(executable: str) -> str:
    """e.g. "Mozilla Firefox 153.7.0esr" (empty string if it cannot be read)."""
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def firefox_skip_reason() -> str | None:
    """Why Firefox tests cannot run here, or None when they can."""
    if find_firefox() is None:
        name = os.environ.get(FIREFOX_ENV, DEFAULT_EXECUTABLE)
        return (
            f"Firefox not found: {name!r} is not on PATH "
            "(`make firefox` installs firefox-esr with apt; or set FLATTR_FIREFOX)"
        )
    return None


# -- profile preparation --


def proxy_prefs(port: int) -> dict[str, Pref]:
    """Prefs that send every http and https request to the proxy on 127.0.0.1:port.

    Loopback itself is never proxied (network.proxy.allow_hijacking_localhost stays
    false), so BiDi and local helpers stay direct.
    """
    return {
        "network.proxy.type": 1,  # manual configuration
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": port,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": port,
        "network.proxy.share_proxy_settings": False,
        "network.proxy.no_proxies_on": "",
        "network.proxy.socks_remote_dns": False,
    }


def write_user_js(profile: Path, prefs: Mapping[str, Pref]) -> Path:
    """Write `prefs` as user_pref() lines to <profile>/user.js (replacing it)."""
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    path = profile / "user.js"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def import_ca_certificate(
    profile: Path, ca_pem: bytes, executable: str | None = None, nickname: str = "test CA"
) -> None:
    """Add `ca_pem` to the profile's certificate database as a trusted TLS root ("C,,").

    Does what `certutil -A -t C,, -d sql:PROFILE` does (libnss3-tools is not
    installed here), through Firefox's own bundled NSS so the cert9.db format matches
    the browser exactly. Runs in a child process because NSS initialises once per
    process and its libraries must be resolved from Firefox's folder (Debian's system
    libnss3 is older than the one Firefox ships). Call before Firefox starts.
    """
    exe = executable or find_firefox()
    if exe is None:
        raise FirefoxLaunchError(firefox_skip_reason() or "Firefox not found")
    lib_dir = Path(os.path.realpath(exe)).parent
    pem_path = profile / ".import-ca.pem"
    pem_path.write_bytes(ca_pem)
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flattr_testing.firefox", "import-ca",
             str(lib_dir), str(profile), str(pem_path), nickname],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        pem_path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise FirefoxLaunchError(
            f"importing the CA into {profile} failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )


def _nss_import_ca(lib_dir: Path, profile: Path, pem_path: Path, nickname: str) -> None:
    """Child-process half of :func:`import_ca_certificate` (NSS through ctypes)."""
    import base64
    import ctypes

    class CertTrust(ctypes.Structure):  # CERTCertTrust in NSS certt.h
        _fields_ = [("ssl", ctypes.c_uint), ("email", ctypes.c_uint),
                    ("objectSigning", ctypes.c_uint)]

    nss = ctypes.CDLL(str(lib_dir / "libnss3.so"))
    smime = ctypes.CDLL(str(lib_dir / "libsmime3.so"))
    ptr = ctypes.c_void_p
    nss.NSS_InitReadWrite.argtypes = [ctypes.c_char_p]
    nss.PK11_GetInternalKeySlot.restype = ptr
    nss.PK11_NeedUserInit.argtypes = [ptr]
    nss.PK11_InitPin.argtypes = [ptr, ctypes.c_char_p, ctypes.c_char_p]
    nss.PK11_ImportCert.argtypes = [ptr, ptr, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    nss.CERT_DecodeTrustString.argtypes = [ctypes.POINTER(CertTrust), ctypes.c_char_p]
    nss.CERT_GetDefaultCertDB.restype = ptr
    nss.CERT_ChangeCertTrust.argtypes = [ptr, ptr, ctypes.POINTER(CertTrust)]
    nss.CERT_DestroyCertificate.argtypes = [ptr]
    nss.PK11_FreeSlot.argtypes = [ptr]
    nss.PORT_GetError.restype = ctypes.c_int
    smime.CERT_DecodeCertFromPackage.restype = ptr
    smime.CERT_DecodeCertFromPackage.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def check(step: str, status: int) -> None:
        if status != 0:
            raise SystemExit(f"NSS {step} failed: status {status}, error {nss.PORT_GetError()}")

    text = pem_path.read_text(encoding="ascii")
    der = base64.b64decode("".join(x for x in text.splitlines() if "-----" not in x))
    check("NSS_InitReadWrite", nss.NSS_InitReadWrite(f"sql:{profile}".encode()))
    slot = nss.PK11_GetInternalKeySlot()
    cert = smime.CERT_DecodeCertFromPackage(der, len(der))
    if not cert:
        raise SystemExit(f"NSS could not decode the certificate in {pem_path}")
    if nss.PK11_NeedUserInit(slot):
        # A fresh database has no password yet; writing trust objects needs one set.
        check("PK11_InitPin", nss.PK11_InitPin(slot, None, b""))
    check("PK11_ImportCert", nss.PK11_ImportCert(slot, cert, 0, nickname.encode(), 0))
    trust = CertTrust()
    check("CERT_DecodeTrustString", nss.CERT_DecodeTrustString(ctypes.byref(trust), b"C,,"))
    check("CERT_ChangeCertTrust",
          nss.CERT_ChangeCertTrust(nss.CERT_GetDefaultCertDB(), cert, ctypes.byref(trust)))
    nss.CERT_DestroyCertificate(cert)
    nss.PK11_FreeSlot(slot)
    check("NSS_Shutdown", nss.NSS_Shutdown())


def native_messaging_dir(home: Path) -> Path:
    """Where Firefox on Linux looks for a user's native messaging host manifests."""
    return home / ".mozilla" / "native-messaging-hosts"


def install_native_manifests(home: Path, source_dir: Path) -> list[Path]:
    """Copy every *.json manifest of `source_dir` into HOME's Firefox manifest folder.

    The host's own installer (`flattr-host install --browser firefox --home DIR`)
    writes straight into `native_messaging_dir(DIR)`; this copy is for hand-made
    manifests in tests.
    """
    target = native_messaging_dir(home)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for manifest in sorted(source_dir.glob("*.json")):
        dest = target / manifest.name
        shutil.copyfile(manifest, dest)
        copied.append(dest)
    return copied


# -- the running browser --


@dataclass
class Firefox:
    """A running test Firefox. `bidi` is an open session; `timings` holds seconds
    from process start to: "bidi_port", "connected", "session"."""

    process: subprocess.Popen[bytes]
    profile: Path
    home: Path
    log_path: Path
    bidi_url: str
    bidi: BidiSession
    executable: str
    timings: dict[str, float] = field(default_factory=dict)

    def output_tail(self, limit: int = 4000) -> str:
        """Last `limit` characters of Firefox's stdout+stderr."""
        return _tail(self.log_path, limit)

    def install_extension(self, path: Path) -> str:
        """Temporary install of an unpacked extension folder; returns its id."""
        return self.bidi.install_extension(str(path.resolve()))

    def extension_base_url(self, addon_id: str) -> str:
        """moz-extension://<UUID>/ of an installed add-on. The UUID is random per
        install, so it is read from the browser's chrome scope (WebExtensionPolicy);
        needs `launch_firefox(system_access=True)`."""
        tree = self.bidi.send("browsingContext.getTree", {"moz:scope": "chrome", "maxDepth": 0})
        chrome = [c for c in tree["contexts"] if c.get("moz:scope") == "chrome"]
        if not chrome:
            raise BidiError("no chrome-scope context: launch with system_access=True")
        host = self.bidi.evaluate(
            f"WebExtensionPolicy.getByID({json.dumps(addon_id)})?.mozExtensionHostname",
            str(chrome[0]["context"]),
        )
        if not isinstance(host, str):
            raise BidiError(f"add-on {addon_id!r} is not installed")
        return f"moz-extension://{host}/"


def _tail(path: Path, limit: int) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


def _browser_env(
    home: Path, extra: Mapping[str, str] | None, headless: bool = True
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_PROXY", "_proxy"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        MOZ_CRASHREPORTER_DISABLE="1",
    )
    if headless:
        env["MOZ_HEADLESS"] = "1"
        for var in ("DISPLAY", "WAYLAND_DISPLAY"):
            env.pop(var, None)
    env.update(extra or {})
    return env


def _wait_for_bidi_url(
    process: subprocess.Popen[bytes], profile: Path, log_path: Path, timeout: float
) -> str:
    """Poll <profile>/WebDriverBiDiServer.json (and the log) for the BiDi address."""
    deadline = time.monotonic() + timeout
    server_file = profile / "WebDriverBiDiServer.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FirefoxLaunchError(
                f"Firefox exited with status {process.returncode} before opening BiDi; "
                f"output:\n{_tail(log_path, 3000)}"
            )
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(server_file.read_text(encoding="utf-8"))
            return f"ws://{info['ws_host']}:{int(info['ws_port'])}/session"
        match = _LISTENING.search(_tail(log_path, 20000))
        if match:
            return match.group(1) + "/session"
        time.sleep(0.05)
    raise FirefoxLaunchError(
        f"Firefox did not open WebDriver BiDi within {timeout} s; output:\n"
        f"{_tail(log_path, 3000)}"
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group Firefox leads, SIGKILL it after KILL_GRACE seconds."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        process.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    # Content processes and native hosts share the group; make sure none survive.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def launch_firefox(
    base_dir: Path,
    *,
    proxy_port: int | None = None,
    trusted_ca_pem: bytes | None = None,
    headless: bool = True,
    prefs: Mapping[str, Pref] | None = None,
    home: Path | None = None,
    native_manifests: Path | None = None,
    env: Mapping[str, str] | None = None,
    executable: str | None = None,
    system_access: bool = False,
    start_timeout: float = 45.0,
    command_timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[Firefox]:
    """Start Firefox headless with a fresh profile under `base_dir`; yield it.

    - `proxy_port`: route http/https through a ConnectProxy on that port.
    - `trusted_ca_pem`: a CA imported into the profile's cert9.db as a trusted root
      (see :func:`import_ca_certificate`); every leaf it issues is then trusted, and
      nothing else is (the BiDi session never accepts insecure certificates).
    - `headless`: False shows the window (needs DISPLAY or WAYLAND_DISPLAY).
    - `home`: HOME for the browser (and so for native hosts); default base_dir/home.
      The host installer's `--home DIR` output is found there.
    - `native_manifests`: a folder of host manifests copied into HOME.
    - `env`: extra environment for Firefox and the native hosts it starts.
    - `system_access`: start with `--remote-allow-system-access`, which lets BiDi
      navigate a tab to the add-on's own pages (moz-extension://UUID/...; refused
      otherwise with "not allowed in this context") and read chrome-scope values
      such as an add-on's UUID (:meth:`Firefox.extension_base_url`).
    """
    exe = executable or find_firefox()
    if exe is None:
        raise FirefoxLaunchError(firefox_skip_reason() or "Firefox not found")
    profile = base_dir / "profile"
    profile.mkdir(parents=True, exist_ok=False)
    home = home if home is not None else base_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    all_prefs: dict[str, Pref] = dict(TEST_PREFS)
    if proxy_port is not None:
        all_prefs.update(proxy_prefs(proxy_port))
    all_prefs.update(prefs or {})
    write_user_js(profile, all_prefs)
    if trusted_ca_pem is not None:
        import_ca_certificate(profile, trusted_ca_pem, exe)
    if native_manifests is not None:
        install_native_manifests(home, native_manifests)

    log_path = base_dir / "firefox.log"
    argv = [
        exe, "--no-remote", "--profile", str(profile),
        "--remote-debugging-port=0", "about:blank",
    ]
    if headless:
        argv.insert(1, "--headless")
    if system_access:
        argv.insert(-1, "--remote-allow-system-access")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_browser_env(home, env, headless), cwd=str(home), start_new_session=True,
        )
    bidi: BidiSession | None = None
    try:
        timings: dict[str, float] = {}
        url = _wait_for_bidi_url(process, profile, log_path, start_timeout)
        timings["bidi_port"] = time.monotonic() - started
        bidi = BidiSession(url, command_timeout)
        timings["connected"] = time.monotonic() - started
        bidi.new_session()
        timings["session"] = time.monotonic() - started
        yield Firefox(process, profile, home, log_path, url, bidi, exe, timings)
    finally:
        if bidi is not None:
            bidi.close()
        _kill_group(process)


if __name__ == "__main__":
    # Internal entry point for import_ca_certificate's child process:
    #   python -m flattr_testing.firefox import-ca LIB_DIR PROFILE PEM NICKNAME
    if len(sys.argv) != 6 or sys.argv[1] != "import-ca":
        raise SystemExit("usage: python -m flattr_testing.firefox import-ca LIB PROFILE PEM NAME")
    _nss_import_ca(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
