"""pytest plugin: a real browser with an extension, the native host and the fake flattr.com.

Registered through the ``pytest11`` entry point, so it is active wherever the package
is installed. It is harmless there: it adds ``--flattr-*`` options and fixtures whose
names all start with ``flattr_``, and does nothing (starts no process, imports no
browser library, prints nothing) until a test asks for one of them. Disable it with
``-p no:flattr_testing``. docs/testing.md is the user's guide.

Fixtures (what each cleans up is in docs/testing.md):

- ``flattr_fake_site`` (session): a running fake flattr.com / api.flattr.com
  (:class:`~flattr_testing.fake_site.FakeSite`, seeded), stopped at the end.
- ``flattr_site``: the same, reset to its seeded state before the test.
- ``flattr_extension`` (session): the :class:`~flattr_testing.extension.Extension`
  browsers load (``--flattr-extension DIR``; default this project's).
- ``flattr_host``: the test's :class:`~flattr_testing.host.Host` (data folder, env).
- ``flattr_spawn_host`` / ``flattr_host_process``: the host started as a browser
  starts it, for protocol-level tests.
- ``flattr_browser_name``: "chromium" or "firefox" (from ``--flattr-browser`` and the
  browsers marker); ``flattr_browser``: a driver for it with the extension loaded
  and the host installed; ``flattr_open_browser``: a factory for more, or for
  another extension; ``flattr_launch``: the Chromium factory with every knob;
  ``flattr_firefox_session`` (module): the Firefox the Firefox drivers share.

On a failed test the host's log, the fake site's journal and screenshots of the
open tabs are attached to the report and written under the artifacts folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flattr_testing.extension import Extension
from flattr_testing.fake_site import FakeSite
from flattr_testing.host import Host, HostProcess, host_env

if TYPE_CHECKING:
    from flattr_testing.browsers import BrowserDriver, ExtensionBrowser
    from flattr_testing.firefox import Firefox

BROWSERS = ("chromium", "firefox")
DEFAULT_CHROMIUM = "/usr/bin/chromium"
MARKER_INI = "flattr_browsers_marker"
DEFAULT_MARKER = "flattr_browsers"
BROWSER_FIXTURES = {"flattr_browser_name", "flattr_launch", "flattr_browser",
                    "flattr_open_browser", "flattr_firefox_session"}
MISSING_EXTRA = ("the Flattr test kit's browser fixtures need Playwright: "
                 "pip install 'flattr-companion[testing]'")


# ---------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flattr", "Flattr test kit (flattr_testing, docs/testing.md)")
    group.addoption(
        "--flattr-browser", action="append", choices=BROWSERS, dest="flattr_browsers",
        default=None,
        help="run browser tests in this browser (repeatable; default: chromium, or the "
             "browsers a test's marker lists)",
    )
    group.addoption(
        "--flattr-headed", action="store_true", default=False,
        help="show the browser windows (pytest-playwright's --headed works too)",
    )
    group.addoption(
        "--flattr-extension", metavar="DIR", default=None,
        help="unpacked extension folder the browsers load (default: this project's)",
    )
    group.addoption(
        "--flattr-artifacts", metavar="DIR", default=None,
        help="folder for screenshots and failure reports (default: test-artifacts/ "
             "under the rootdir)",
    )
    group.addoption(
        "--flattr-chromium", metavar="PATH", default=None,
        help=f"Chromium binary (default: $FLATTR_CHROMIUM or {DEFAULT_CHROMIUM})",
    )
    parser.addini(
        MARKER_INI, default=DEFAULT_MARKER,
        help="name of the marker listing the browsers a test runs in "
             f"(default {DEFAULT_MARKER})",
    )


@dataclass(frozen=True)
class Options:
    """The plugin's settings, resolved once per session."""

    browsers: tuple[str, ...] | None
    headed: bool
    extension_dir: Path | None
    artifacts: Path
    chromium: str
    marker: str

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        artifacts = config.getoption("flattr_artifacts")
        extension = config.getoption("flattr_extension")
        headed = bool(config.getoption("flattr_headed")
                      or config.getoption("headed", default=False)
                      or os.environ.get("FLATTR_E2E_HEADED"))
        return cls(
            browsers=tuple(config.getoption("flattr_browsers") or ()) or None,
            headed=headed,
            extension_dir=Path(extension).resolve() if extension else None,
            artifacts=(Path(artifacts).resolve() if artifacts
                       else config.rootpath / "test-artifacts"),
            chromium=(config.getoption("flattr_chromium")
                      or os.environ.get("FLATTR_CHROMIUM", DEFAULT_CHROMIUM)),
            marker=str(config.getini(MARKER_INI) or DEFAULT_MARKER),
        )


_OPTIONS = pytest.StashKey[Options]()


def _options(config: pytest.Config) -> Options:
    if _OPTIONS not in config.stash:
        config.stash[_OPTIONS] = Options.from_config(config)
    return config.stash[_OPTIONS]


def pytest_configure(config: pytest.Config) -> None:
    """Register the browsers marker; refuse a ``--flattr-extension`` that is not one."""
    folder = config.getoption("flattr_extension", default=None)
    if folder:
        try:
            Extension.load(folder)
        except Exception as error:
            raise pytest.UsageError(f"--flattr-extension: {error}") from None
    marker = str(config.getini(MARKER_INI) or DEFAULT_MARKER)
    config.addinivalue_line(
        "markers", f"{marker}(*names): run the test in these browsers (chromium, firefox)"
    )


# ---------------------------------------------------------------------------------
# Which browsers run, and why not
# ---------------------------------------------------------------------------------


def browser_skip_reason(name: str, chromium: str = DEFAULT_CHROMIUM) -> str | None:
    """Why ``name`` cannot run here (None when it can)."""
    if name == "chromium":
        if not os.access(chromium, os.X_OK):
            return f"Chromium not found: {chromium} is not installed (or pass --flattr-chromium)"
        return None
    from flattr_testing.firefox import firefox_skip_reason

    return firefox_skip_reason()


def browser_version(name: str, chromium: str = DEFAULT_CHROMIUM) -> str:
    """e.g. "Chromium 156.0.8078.79" / "Mozilla Firefox 153.7.0esr" ("" if unknown)."""
    if browser_skip_reason(name, chromium):
        return ""
    exe = chromium if name == "chromium" else shutil.which(
        os.environ.get("FLATTR_FIREFOX", "firefox-esr"))
    if exe is None:
        return ""
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1].split(" built on ")[0].strip() if lines else ""


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``flattr_browser_name``: the marker's browsers (default chromium),
    narrowed to ``--flattr-browser`` when given."""
    if "flattr_browser_name" not in metafunc.fixturenames:
        return
    options = _options(metafunc.config)
    marker = metafunc.definition.get_closest_marker(options.marker)
    names = tuple(marker.args) if marker is not None else None
    unknown = set(names or ()) - set(BROWSERS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown browsers "
                                f"{sorted(unknown)} in @{options.marker}; known: {BROWSERS}")
    if names is None:
        names = options.browsers or ("chromium",)
    elif options.browsers:
        names = tuple(n for n in names if n in options.browsers)
    metafunc.parametrize("flattr_browser_name", names, scope="function")


_SKIPPED = pytest.StashKey[dict[str, str]]()
_USES_BROWSERS = pytest.StashKey[bool]()


def _uses_browsers(item: pytest.Item) -> bool:
    return bool(BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip a missing browser's tests with the reason (never silently)."""
    options = _options(config)
    skipped: dict[str, str] = {}
    reasons: dict[str, str | None] = {}
    for item in items:
        if not _uses_browsers(item):
            continue
        config.stash[_USES_BROWSERS] = True
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("flattr_browser_name", "chromium") if callspec else "chromium"
        if name not in reasons:
            reasons[name] = browser_skip_reason(name, options.chromium)
        reason = reasons[name]
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
            skipped[name] = reason
    config.stash[_SKIPPED] = skipped


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Which browsers run (with versions), printed only when browser tests were collected."""
    if not config.stash.get(_USES_BROWSERS, False):
        return []
    options = _options(config)
    lines = []
    for name in options.browsers or BROWSERS:
        reason = browser_skip_reason(name, options.chromium)
        status = browser_version(name, options.chromium) if reason is None else f"SKIPPED: {reason}"
        lines.append(f"flattr {name}: {status}")
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say why a browser's tests were skipped, even under -q."""
    for name, reason in sorted(config.stash.get(_SKIPPED, {}).items()):
        terminalreporter.write_line(f"flattr: {name} tests SKIPPED: {reason}", yellow=True)


# ---------------------------------------------------------------------------------
# What a test started, for its failure report
# ---------------------------------------------------------------------------------


@dataclass
class Run:
    """What one test's fixtures started (read by the failure report)."""

    site: FakeSite | None = None
    hosts: list[Host] = field(default_factory=list)
    browsers: list[Any] = field(default_factory=list)
    firefox: Any = None


_RUN = pytest.StashKey[Run]()


def _run(request: pytest.FixtureRequest) -> Run:
    stash: pytest.Stash = request.node.stash
    if _RUN not in stash:
        stash[_RUN] = Run()
    return stash[_RUN]


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and report.when in ("setup", "call") and _RUN in item.stash:
        try:
            _attach_failure(item, report, item.stash[_RUN])
        except Exception as error:  # a report that cannot be written must not hide the failure
            report.sections.append(("flattr artifacts", f"(not written: {error!r})"))
    return report


def _attach_failure(item: pytest.Item, report: pytest.TestReport, run: Run) -> None:
    """Host log, fake-site journal, screenshots: as report sections and as files."""
    folder = _options(item.config).artifacts / "failures" / _safe_name(item.nodeid)
    shutil.rmtree(folder, ignore_errors=True)  # nothing left from an earlier run
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index, host in enumerate(run.hosts):
        text = host.log_text()
        path = folder / ("host.log" if index == 0 else f"host-{index}.log")
        path.write_text(text, encoding="utf-8")
        written.append(path)
        report.sections.append((f"flattr host log ({host.home})", text[-20000:]))
    if run.site is not None:
        try:
            entries = run.site.journal()
            text = run.site.journal_text()
        except Exception as error:  # the site itself may be what broke
            entries, text = [], f"(journal unavailable: {error})"
        path = folder / "journal.json"
        path.write_text(json.dumps(entries, indent=1), encoding="utf-8")
        written.append(path)
        report.sections.append(("flattr fake-site journal", text))
    if run.browsers:
        from flattr_testing.browsers import screenshot_open_pages

        for index, browser in enumerate(run.browsers):
            if getattr(browser, "closed", False):
                continue
            relative = f"failures/{folder.name}/{browser.name}{index}"
            written.extend(screenshot_open_pages(browser, relative))
    if run.firefox is not None:
        path = folder / "firefox-output.log"
        path.write_text(run.firefox.output_tail(20000), encoding="utf-8")
        written.append(path)
    report.sections.append(("flattr artifacts", "\n".join(str(p) for p in written)))


# ---------------------------------------------------------------------------------
# Fixtures: the fake site, the extension, the host
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def flattr_fake_site() -> Iterator[FakeSite]:
    """One running fake flattr.com for the session (seeded demo data); stopped after."""
    server = FakeSite(seed=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def flattr_site(request: pytest.FixtureRequest, flattr_fake_site: FakeSite) -> FakeSite:
    """The session's fake site, reset to its seeded start-up state for this test
    (users, tokens, subscriptions, scripted answers, faults and the journal)."""
    flattr_fake_site.reset(seed=True)
    _run(request).site = flattr_fake_site
    return flattr_fake_site


@pytest.fixture(scope="session")
def flattr_artifacts(pytestconfig: pytest.Config) -> Path:
    """The artifacts folder (``--flattr-artifacts``); created on first use."""
    return _options(pytestconfig).artifacts


@pytest.fixture(scope="session")
def flattr_extension(pytestconfig: pytest.Config) -> Extension:
    """The extension browsers load: ``--flattr-extension DIR``, else this project's."""
    return Extension.load(_options(pytestconfig).extension_dir)


@pytest.fixture
def flattr_host(request: pytest.FixtureRequest, tmp_path: Path, flattr_site: FakeSite,
                flattr_extension: Extension) -> Host:
    """This test's host: data folder ``tmp_path/host``, API = the fake site, HOME =
    ``tmp_path/home``; it admits ``flattr_extension``. The folder is pytest's
    ``tmp_path`` (kept for the last runs, as pytest does)."""
    home = tmp_path / "host"
    (tmp_path / "home").mkdir(exist_ok=True)
    host = Host(home, host_env(tmp_path, home, flattr_site.api, flattr_site.ca))
    host.allow(flattr_extension.chromium_id, flattr_extension.gecko_id)
    _run(request).hosts.append(host)
    return host


SpawnFn = Callable[..., HostProcess]


@pytest.fixture
def flattr_spawn_host(tmp_path: Path, flattr_host: Host,
                      flattr_extension: Extension) -> Iterator[SpawnFn]:
    """Factory: ``spawn(args=None, env=None) -> HostProcess``. Installs the host into a
    Chromium profile folder with the real installer and runs the manifest's launcher
    the way Chromium does (argv[1] = the extension's origin, cwd = its folder).
    Every process it started is killed at teardown."""
    started: list[HostProcess] = []
    profile = tmp_path / "host-profile"
    profile.mkdir(exist_ok=True)
    manifest = json.loads(flattr_host.install(profile).read_text())
    launcher = Path(manifest["path"])

    def spawn(args: list[str] | None = None, env: dict[str, str] | None = None) -> HostProcess:
        process = HostProcess(launcher, flattr_host.home,
                              args if args is not None else [flattr_extension.chromium_origin],
                              env={**flattr_host.env, **(env or {})})
        started.append(process)
        return process

    yield spawn
    for process in started:
        with contextlib.suppress(Exception):
            process.kill()


@pytest.fixture
def flattr_host_process(flattr_spawn_host: SpawnFn) -> HostProcess:
    """One host started as Chromium starts it; killed at teardown."""
    return flattr_spawn_host()


# ---------------------------------------------------------------------------------
# Fixtures: browsers
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def flattr_playwright(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Playwright (sync API): pytest-playwright's ``playwright`` when installed, else
    one started here for the session."""
    try:
        yield request.getfixturevalue("playwright")
        return
    except pytest.FixtureLookupError:
        pass
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(MISSING_EXTRA)
    manager = sync_playwright().start()
    try:
        yield manager
    finally:
        manager.stop()


LaunchFn = Callable[..., "ExtensionBrowser"]


@pytest.fixture
def flattr_launch(request: pytest.FixtureRequest, tmp_path: Path, flattr_playwright: Any,
                  flattr_site: FakeSite, flattr_host: Host,
                  flattr_extension: Extension) -> Iterator[LaunchFn]:
    """Chromium factory: ``launch(profile=None, extension=None, install_host=True,
    env=None, extra_args=())`` -> ExtensionBrowser.

    Starts the system's Chromium with the extension (default ``flattr_extension``;
    a folder or an Extension) loaded, the host installed into the profile first
    (unless ``install_host`` is false), https://flattr.com served by the fake site.
    The same ``profile`` can be launched again after ``close()`` (a browser
    restart). Every browser launched is closed at teardown, whatever the test did.
    """
    from flattr_testing.browsers import launch_chromium

    options = _options(request.config)
    run = _run(request)
    opened: list[ExtensionBrowser] = []

    def start(profile: Path | None = None, extension: Extension | Path | str | None = None,
              install_host: bool = True, env: dict[str, str] | None = None,
              extra_args: tuple[str, ...] = ()) -> ExtensionBrowser:
        chosen = (extension if isinstance(extension, Extension)
                  else Extension.load(extension) if extension is not None else flattr_extension)
        profile = profile or tmp_path / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        flattr_host.allow(chosen.chromium_id, chosen.gecko_id)
        if install_host:
            flattr_host.install(profile)
        browser = launch_chromium(
            flattr_playwright, profile, extension=chosen, env=env or flattr_host.env,
            site=flattr_site.site, api=flattr_site.api, spki=flattr_site.spki,
            executable=options.chromium, headless=not options.headed,
            extra_args=extra_args, artifacts=options.artifacts,
            files=flattr_site.files or None,
        )
        opened.append(browser)
        run.browsers.append(browser)
        return browser

    yield start
    for browser in reversed(opened):
        browser.close()


@pytest.fixture(scope="module")
def flattr_firefox_session(request: pytest.FixtureRequest,
                           tmp_path_factory: pytest.TempPathFactory,
                           flattr_fake_site: FakeSite) -> Iterator[Firefox]:
    """One firefox-esr for the module: https://flattr.com, api. and files.flattr.com through a
    loopback CONNECT proxy, the fake CA imported into the profile as a trusted root,
    the event recorder preloaded, console entries collected,
    ``--remote-allow-system-access`` (tests may open the add-on's pages). The
    browser's whole process group (hosts included) and the proxy stop afterwards."""
    from urllib.parse import urlsplit

    from flattr_testing.connect_proxy import ConnectProxy, flattr_map
    from flattr_testing.firefox import launch_firefox
    from flattr_testing.pages import RECORDER_JS

    options = _options(request.config)
    site = flattr_fake_site
    mapping = flattr_map(urlsplit(site.site).port or 443, urlsplit(site.api).port or 443,
                         urlsplit(site.files).port or 443 if site.files else None)
    with (
        ConnectProxy(mapping) as proxy,
        launch_firefox(
            tmp_path_factory.mktemp("firefox"),
            proxy_port=proxy.port,
            trusted_ca_pem=Path(site.ca).read_bytes(),
            system_access=True,
            headless=not options.headed,
            # Firefox's own switch for optional permissions: permissions.request()
            # grants without the doorhanger, which BiDi cannot click.
            prefs={"extensions.webextOptionalPermissionPrompts": False},
        ) as firefox,
    ):
        firefox.bidi.add_preload_script(f"() => {{ {RECORDER_JS} }}")
        firefox.bidi.subscribe(["log.entryAdded"])
        # Firefox's own background requests reach the proxy too and are refused there
        # (proxy.refused): nothing leaves the machine.
        yield firefox


OpenFn = Callable[..., "BrowserDriver"]


@pytest.fixture
def flattr_open_browser(request: pytest.FixtureRequest, flattr_host: Host,
                        flattr_extension: Extension) -> Iterator[OpenFn]:
    """Factory: ``open_browser(name="chromium", extension=None)`` -> a driver with the
    extension loaded and the host installed for that browser. Chromium: a fresh
    profile per call (see ``flattr_launch``). Firefox: the module's browser with the
    extension installed as a temporary add-on; at teardown the driver closes its
    tabs, routes and preload scripts, deletes cookies and removes the add-on."""
    from flattr_testing.browsers import FirefoxBrowser

    options = _options(request.config)
    run = _run(request)
    drivers: list[FirefoxBrowser] = []
    count = 0

    def open_browser(name: str = "chromium",
                     extension: Extension | Path | str | None = None) -> BrowserDriver:
        nonlocal count
        if name not in BROWSERS:
            raise ValueError(f"unknown browser {name!r}; known: {BROWSERS}")
        chosen = (extension if isinstance(extension, Extension)
                  else Extension.load(extension) if extension is not None else flattr_extension)
        count += 1
        if name == "chromium":
            launch: LaunchFn = request.getfixturevalue("flattr_launch")
            tmp_path: Path = request.getfixturevalue("tmp_path")
            profile = None if count == 1 else tmp_path / f"profile-{count}"
            return launch(profile=profile, extension=chosen)
        firefox: Firefox = request.getfixturevalue("flattr_firefox_session")
        flattr_host.allow(chosen.chromium_id, chosen.gecko_id)
        flattr_host.install_firefox(firefox.home)
        driver = FirefoxBrowser(firefox, chosen, options.artifacts)
        drivers.append(driver)
        run.browsers.append(driver)
        run.firefox = firefox
        return driver

    yield open_browser
    for driver in reversed(drivers):
        driver.close()


@pytest.fixture
def flattr_browser(flattr_browser_name: str, flattr_open_browser: OpenFn) -> BrowserDriver:
    """A browser (``flattr_browser_name``) with the extension loaded and the host
    installed; closed or cleaned at teardown (see ``flattr_open_browser``)."""
    return flattr_open_browser(flattr_browser_name)
