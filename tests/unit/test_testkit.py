"""The test kit's parts that need no browser: extension ids, packaging, the site client."""

from __future__ import annotations

import glob
import json
import ssl
import tomllib
import urllib.request
from pathlib import Path

import pytest

from flattr_host.core.config import CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID
from flattr_testing.extension import Extension, ExtensionError, default_extension_dir
from flattr_testing.fake_site import BULK_PATH, FakeSite
from flattr_testing.host import Host, host_env

ROOT = Path(__file__).resolve().parents[2]


def write_manifest(folder: Path, manifest: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_our_extension_ids_are_the_hosts_defaults() -> None:
    ours = Extension.load(ROOT / "extension")
    assert ours.chromium_id == CHROMIUM_EXTENSION_ID  # from the manifest's key
    assert ours.gecko_id == FIREFOX_EXTENSION_ID
    assert ours.popup_path == "popup/popup.html"
    assert ours.build_id == "dev"


def test_default_is_the_packaged_copy_of_our_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLATTR_EXTENSION", raising=False)
    monkeypatch.delenv("FLATTR_E2E_EXTENSION", raising=False)
    assert Extension.load().path == (ROOT / "extension").resolve()
    monkeypatch.setenv("FLATTR_EXTENSION", "/nowhere/at/all")
    with pytest.raises(ExtensionError, match="/nowhere/at/all is not an unpacked extension"):
        Extension.load()


def test_keyless_extension_id_comes_from_its_path(tmp_path: Path) -> None:
    one = Extension.load(write_manifest(tmp_path / "one", {"version": "1"}))
    two = Extension.load(write_manifest(tmp_path / "two", {"version": "1"}))
    for ext in (one, two):
        assert len(ext.chromium_id) == 32 and set(ext.chromium_id) <= set("abcdefghijklmnop")
    assert one.chromium_id != two.chromium_id
    assert Extension.load(tmp_path / "one").chromium_id == one.chromium_id
    assert one.gecko_id is None and one.build_id is None and one.popup_path is None


@pytest.mark.parametrize("content", ["[1, 2]", "not json", None])
def test_not_an_extension_is_refused_by_name(tmp_path: Path, content: str | None) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    if content is not None:
        (folder / "manifest.json").write_text(content)
    with pytest.raises(ExtensionError, match=str(folder)):
        Extension.load(folder)


def test_package_data_ships_every_extension_file() -> None:
    """The wheel's flattr_host/extension (what the kit loads by default) is the whole
    extension/ folder but its packaging script."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["flattr_host.extension"]
    folder = ROOT / "extension"
    shipped = {path for pattern in patterns for path in glob.glob(pattern, root_dir=folder)
               if (folder / path).is_file()}
    wanted = {str(p.relative_to(folder)) for p in folder.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"}
    assert wanted <= shipped, sorted(wanted - shipped)
    assert default_extension_dir().resolve() == folder.resolve()


def test_host_admits_another_extension(tmp_path: Path) -> None:
    host = Host(tmp_path / "host", host_env(tmp_path, tmp_path / "host", "https://x", "ca"))
    host.allow("a" * 32, "other@example.test")
    host.allow("a" * 32, None)  # twice: listed once
    allowed = host.env["FLATTR_ALLOWED_EXTENSIONS"].split(",")
    assert allowed == [CHROMIUM_EXTENSION_ID, "a" * 32, FIREFOX_EXTENSION_ID,
                       "other@example.test"]
    profile = tmp_path / "profile"
    manifest = json.loads(host.install(profile).read_text())
    assert f"chrome-extension://{'a' * 32}/" in manifest["allowed_origins"]
    assert host.log_text().startswith("(no host log")


def test_site_client_helpers(site: FakeSite) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        site.revoke()
    with pytest.raises(ValueError, match="exactly one"):
        site.revoke("t", username="u")
    assert site.journal_text() == "(no requests)"
    token = site.create_user("kit-user")["token"]
    site.script("POST", BULK_PATH, [{"status": 200, "body": []}])
    body = json.dumps([{"url": "https://a.example/"}]).encode()
    request = urllib.request.Request(  # noqa: S310 - https to the fake site
        f"{site.api}{BULK_PATH}", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=site.tls, timeout=30):  # noqa: S310
        pass
    assert isinstance(site.tls, ssl.SSLContext)
    assert site.bulk_urls() == ["https://a.example/"]
    assert site.bulk_urls(token) == ["https://a.example/"]
    assert site.bulk_urls("someone-else") == []
    assert f"api  POST   {BULK_PATH}" in site.journal_text()


def test_one_exception_root() -> None:
    from flattr_testing.bidi import BidiError
    from flattr_testing.connect_proxy import ProxyConfigError
    from flattr_testing.errors import FlattrTestingError
    from flattr_testing.fake_site import FakeSiteError
    from flattr_testing.firefox import FirefoxLaunchError
    from flattr_testing.host import HostSetupError

    for error in (BidiError, ProxyConfigError, FakeSiteError, FirefoxLaunchError,
                  HostSetupError, ExtensionError):
        assert issubclass(error, FlattrTestingError), error
    # Failed admin calls read as failed checks in pytest's report.
    assert issubclass(FakeSiteError, AssertionError)


def test_failed_install_names_the_command_and_the_error(tmp_path: Path) -> None:
    from flattr_testing.host import HostSetupError

    host = Host(tmp_path / "host", host_env(tmp_path, tmp_path / "host", "https://x", "ca"))
    profile = tmp_path / "profile"
    profile.write_text("a file where the profile folder should be")
    with pytest.raises(HostSetupError, match=r"install --browser chromium .*failed \(exit"):
        host.install(profile)


class _ClosingWindow:
    """browsingContext.create as Firefox answers it while the window focused last is
    closing: "no such frame" ``failures`` times, then a context."""

    def __init__(self, failures: int, error: str = "no such frame") -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def create_context(self) -> str:
        from flattr_testing.bidi import BidiCommandError

        self.calls += 1
        if self.calls <= self.failures:
            raise BidiCommandError("browsingContext.create", self.error,
                                   "DiscardedBrowsingContextError")
        return "context-1"


def test_firefox_new_tab_waits_out_a_closing_window() -> None:
    from flattr_testing.bidi import BidiCommandError
    from flattr_testing.browsers import FirefoxBrowser

    browser = object.__new__(FirefoxBrowser)
    browser.bidi = _ClosingWindow(failures=2)  # type: ignore[assignment]
    assert browser._new_tab() == "context-1" and browser.bidi.calls == 3  # type: ignore[attr-defined]
    browser.bidi = _ClosingWindow(failures=1, error="invalid argument")  # type: ignore[assignment]
    with pytest.raises(BidiCommandError, match="invalid argument"):
        browser._new_tab()
