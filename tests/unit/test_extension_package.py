"""The extension folder and its packaging step (extension/package.py).

Checks the manifest policy the issue sets (fixed id, narrow permissions, content
script scope, Firefox keys), that the unpacked folder says build "dev", and that the
packaging step writes the build id into a copy and reproducible store zips.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "extension"
EXTENSION_ID = "jimjcpbicodoomdmhndojmkjllmolafb"
GECKO_ID = "companion@flattr-companion.example"


def load_packager() -> ModuleType:
    path = EXTENSION / "package.py"
    spec = importlib.util.spec_from_file_location("flattr_extension_package", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


packager = load_packager()


@pytest.fixture
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXTENSION / "manifest.json").read_text())
    return data


def id_from_key(key: str) -> str:
    """Chromium's rule: first 32 hex digits of sha256(DER key), 0-f mapped to a-p."""
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


# --- the source folder -------------------------------------------------------------


def test_manifest_key_gives_the_fixed_extension_id(manifest: dict[str, Any]) -> None:
    assert id_from_key(manifest["key"]) == EXTENSION_ID


def test_manifest_permissions_are_narrow(manifest: dict[str, Any]) -> None:
    assert manifest["manifest_version"] == 3
    # At install only what "Flattr this page" needs; attention's tabs (the active
    # tab's URL), idle (chrome.idle) and scripting (a page's creator markers) are
    # requested when the user opts a site in (docs/extension.md, Permissions).
    assert sorted(manifest["permissions"]) == ["activeTab", "nativeMessaging"]
    assert sorted(manifest["optional_permissions"]) == ["idle", "scripting", "tabs"]
    assert "host_permissions" not in manifest
    assert "optional_host_permissions" not in manifest
    assert "storage" not in manifest["permissions"]
    assert "web_accessible_resources" not in manifest
    assert "externally_connectable" not in manifest


def test_content_script_only_on_https_flattr_com_top_frame(manifest: dict[str, Any]) -> None:
    isolated, watchdog = manifest["content_scripts"]
    for script in (isolated, watchdog):
        assert script["matches"] == ["https://flattr.com/*"]
        assert script["run_at"] == "document_start"
        assert script.get("all_frames", False) is False
    assert isolated["js"][-1] == "content/flattr.js" and "build.js" in isolated["js"]
    assert "world" not in isolated
    # Firefox gives the isolated script no signal on removal: a page-world watchdog
    # notices the silence and reports flattr-uninstalled (docs/firefox.md).
    assert watchdog["js"] == ["content/watchdog.js"] and watchdog["world"] == "MAIN"


def test_background_keys_for_both_browsers(manifest: dict[str, Any]) -> None:
    background = manifest["background"]
    assert background["service_worker"] == "background.js"
    # Firefox runs background.scripts in order; the worker imports the same files.
    assert background["scripts"] == ["build.js", "lib/validate.js", "background.js"]
    assert manifest["browser_specific_settings"]["gecko"]["id"] == GECKO_ID
    worker = (EXTENSION / "background.js").read_text()
    assert 'importScripts("build.js", "lib/validate.js")' in worker


def test_every_file_the_manifest_names_exists(manifest: dict[str, Any]) -> None:
    names = packager.referenced_files(manifest)
    assert "popup/popup.html" in names
    for name in names:
        assert (EXTENSION / name).is_file(), name


def test_unpacked_folder_says_build_dev() -> None:
    text = (EXTENSION / "build.js").read_text()
    assert packager.BUILD_LINE.findall(text) == ["dev"]


def test_no_persistent_extension_storage_in_code() -> None:
    """The token lives in the host only: no chrome.storage, no localStorage anywhere."""
    for path in EXTENSION.rglob("*.js"):
        text = path.read_text()
        assert not re.search(r"\.storage\s*\.\s*(local|sync|session)", text), path
        assert "localStorage" not in text, path
        assert "indexedDB" not in text, path


def test_content_script_checks_origin_and_frame() -> None:
    text = (EXTENSION / "content" / "flattr.js").read_text()
    assert 'location.host !== "flattr.com"' in text
    assert 'location.protocol !== "https:"' in text
    assert "window.top !== window" in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_parses() -> None:
    for path in sorted(EXTENSION.rglob("*.js")):
        result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"


# --- packaging ---------------------------------------------------------------------


def test_package_writes_build_id_and_zips(tmp_path: Path, manifest: dict[str, Any]) -> None:
    out = packager.package(tmp_path, "1.2.3-test")
    assert out["build"] == "1.2.3-test"
    unpacked = Path(out["unpacked"])
    assert packager.BUILD_LINE.findall((unpacked / "build.js").read_text()) == ["1.2.3-test"]
    # The unpacked copy keeps the key (same id) and is otherwise the source.
    assert json.loads((unpacked / "manifest.json").read_text()) == manifest
    content_script = Path("content") / "flattr.js"
    assert (unpacked / content_script).read_bytes() == (EXTENSION / content_script).read_bytes()
    assert not (unpacked / "package.py").exists()
    # The source folder is untouched.
    assert packager.BUILD_LINE.findall((EXTENSION / "build.js").read_text()) == ["dev"]

    with zipfile.ZipFile(out["chromium"]) as archive:
        names = set(archive.namelist())
        chromium = json.loads(archive.read("manifest.json"))
        build_js = archive.read("build.js").decode()
    assert {"background.js", "content/flattr.js", "lib/validate.js", "popup/popup.html"} <= names
    assert "package.py" not in names
    assert '"1.2.3-test"' in build_js
    assert "key" not in chromium
    assert "scripts" not in chromium["background"]
    assert chromium["background"]["service_worker"] == "background.js"
    assert chromium["version"] == manifest["version"]
    assert chromium["permissions"] == manifest["permissions"]
    assert chromium["optional_permissions"] == manifest["optional_permissions"]
    assert {"_locales/en/messages.json", "_locales/de/messages.json"} <= names

    with zipfile.ZipFile(out["firefox"]) as archive:
        firefox = json.loads(archive.read("manifest.json"))
    assert "key" not in firefox
    assert "service_worker" not in firefox["background"]
    assert firefox["background"]["scripts"] == manifest["background"]["scripts"]
    assert firefox["browser_specific_settings"]["gecko"]["id"] == GECKO_ID


def test_default_build_id_follows_the_sources(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(EXTENSION, source, ignore=shutil.ignore_patterns("__pycache__"))
    first = packager.default_build_id(source)
    assert re.fullmatch(r"\d+\.\d+\.\d+\+[0-9a-f]{12}", first)
    assert packager.default_build_id(source) == first
    (source / "popup" / "popup.css").write_text("body{}\n")
    assert packager.default_build_id(source) != first


def test_zips_are_reproducible(tmp_path: Path) -> None:
    a = packager.package(tmp_path / "a", "same")
    b = packager.package(tmp_path / "b", "same")
    for store in ("chromium", "firefox"):
        assert Path(a[store]).read_bytes() == Path(b[store]).read_bytes()


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, 'quote"', "nl\n"])
def test_bad_build_id_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(packager.PackageError, match="build id"):
        packager.package(tmp_path, bad)
    assert not any(tmp_path.iterdir())


def test_build_js_must_hold_one_build_line() -> None:
    with pytest.raises(packager.PackageError, match="found 0"):
        packager.rewrite_build("// nothing\n", "x")
    with pytest.raises(packager.PackageError, match="found 2"):
        two = 'globalThis.FLATTR_BUILD = "a";\nglobalThis.FLATTR_BUILD = "b";\n'
        packager.rewrite_build(two, "x")


def test_missing_referenced_file_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(EXTENSION, source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "popup" / "popup.html").unlink()
    with pytest.raises(packager.PackageError, match=r"popup/popup\.html"):
        packager.package(tmp_path / "out", "x", source=source)


def test_cli_prints_outputs_or_one_line_error(tmp_path: Path) -> None:
    cli = [sys.executable, str(EXTENSION / "package.py"), "--out", str(tmp_path), "--build-id"]
    ok = subprocess.run(
        [*cli, "cli-1"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    outputs = json.loads(ok.stdout)
    assert outputs["build"] == "cli-1"
    assert Path(outputs["chromium"]).is_file()

    bad = subprocess.run(
        [*cli, "no good"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


# --- store rules that can be checked offline ---------------------------------------

LOCALES = EXTENSION / "_locales"
DOCS = ROOT / "docs" / "extension.md"


def messages(locale: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((LOCALES / locale / "messages.json").read_text("utf-8"))
    return data


def resolve(manifest: dict[str, Any], value: str, locale: str = "en") -> str:
    """A manifest string as the store shows it (``__MSG_key__`` looked up)."""
    found = re.fullmatch(r"__MSG_(\w+)__", value)
    return str(messages(locale)[found[1]]["message"]) if found else value


def test_chrome_web_store_manifest_rules(tmp_path: Path) -> None:
    """What the Chrome Web Store checks on upload that needs no network: no ``key``,
    MV3, a version of 1 to 4 dot-separated integers, name and description within
    their limits in every locale, a 128 px PNG icon, no Firefox-only keys, only
    permission names Chrome knows, and no remote code (every script is a file)."""
    out = packager.package(tmp_path, "store-check")
    with zipfile.ZipFile(out["chromium"]) as archive:
        store = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
        icon = archive.read(store["icons"]["128"])
        html = archive.read(store["action"]["default_popup"]).decode()
    assert "key" not in store
    assert "browser_specific_settings" not in store
    assert "scripts" not in store["background"]
    assert store["manifest_version"] == 3
    assert re.fullmatch(r"\d{1,5}(\.\d{1,5}){0,3}", store["version"])
    for locale in ("en", "de"):
        assert f"_locales/{locale}/messages.json" in names
        assert 0 < len(resolve(store, store["name"], locale)) <= 75
        assert 0 < len(resolve(store, store["description"], locale)) <= 132
        assert len(resolve(store, store["action"]["default_title"], locale)) <= 75
    assert store["default_locale"] == "en"
    # PNG signature, then the IHDR width and height.
    assert icon[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(icon[16:20], "big"), int.from_bytes(icon[20:24], "big")) == (128, 128)
    known = {"nativeMessaging", "activeTab", "tabs", "idle", "scripting"}
    assert set(store["permissions"]) | set(store["optional_permissions"]) <= known
    assert "http" not in " ".join(re.findall(r"<script[^>]*>", html))
    assert "content_security_policy" not in store  # the MV3 default: no remote code


def test_every_permission_is_justified_in_the_docs(manifest: dict[str, Any]) -> None:
    """docs/extension.md has a bullet starting with each permission (install-time and
    optional), as the stores' "justify each permission" form asks."""
    text = DOCS.read_text("utf-8")
    section = text.split("## Permissions", 1)[1].split("\n## ", 1)[0]
    for name in [*manifest["permissions"], *manifest["optional_permissions"]]:
        assert re.search(rf"^- `{name}`", section, re.MULTILINE), name


def test_firefox_zip_declares_data_collection_and_only_background_scripts(
        tmp_path: Path) -> None:
    out = packager.package(tmp_path, "store-check")
    with zipfile.ZipFile(out["firefox"]) as archive:
        store = json.loads(archive.read("manifest.json"))
    gecko = store["browser_specific_settings"]["gecko"]
    assert gecko["data_collection_permissions"]["required"] == [
        "browsingActivity", "authenticationInfo"]
    assert list(store["background"]) == ["scripts"]
    assert "minimum_chrome_version" not in store


# --- translations ------------------------------------------------------------------


def used_message_keys() -> set[str]:
    """Every key the extension looks up: data-i18n attributes, t("...") and
    getMessage("...") calls, ``__MSG_x__`` in the manifest, PROBLEM/PAUSE tables."""
    keys: set[str] = set()
    for path in EXTENSION.rglob("*"):
        if path.suffix not in {".html", ".js", ".json"} or "_locales" in path.parts:
            continue
        text = path.read_text("utf-8")
        keys |= set(re.findall(r'data-i18n="(\w+)"', text))
        keys |= set(re.findall(r'\bt\("(\w+)"', text))
        keys |= set(re.findall(r'getMessage\("(\w+)"', text))
        keys |= set(re.findall(r"__MSG_(\w+)__", text))
        keys |= set(re.findall(r'\w+: "((?:paused|problem|status)[A-Z]\w+)"', text))
        keys |= set(re.findall(r'"(attention(?:Line|Site)\w+)"', text))
    return keys


def test_every_message_key_exists_in_every_locale() -> None:
    used = used_message_keys()
    assert {"extName", "statusReady", "pausedSignedOut", "problemMissing",
            "attentionLineCounted", "retryFailed"} <= used
    en = messages("en")
    for locale in sorted(p.name for p in LOCALES.iterdir()):
        table = messages(locale)
        assert sorted(used - set(table)) == [], locale
        assert set(table) == set(en), f"{locale} and en hold different keys"
        for key, entry in table.items():
            # Same placeholders as English, each used in the message.
            assert entry.get("placeholders", {}).keys() == en[key].get("placeholders", {}).keys()
            for name in entry.get("placeholders", {}):
                assert f"${name.upper()}$" in entry["message"], (locale, key, name)
    assert messages("de")["signIn"]["message"] != en["signIn"]["message"]


def test_popup_has_no_text_outside_i18n() -> None:
    """Every element of popup.html with text of its own carries data-i18n (or is a
    command line or an id-filled slot), so nothing English is left untranslated."""
    from html.parser import HTMLParser

    class Check(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[dict[str, str | None]] = []
            self.bare: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in {"img", "input", "meta", "link", "br"}:
                self.stack.append({"tag": tag, **dict(attrs)})

        def handle_endtag(self, tag: str) -> None:
            if self.stack:
                self.stack.pop()

        def handle_data(self, data: str) -> None:
            if not data.strip() or data.strip().isdigit() or not self.stack:
                return
            top = self.stack[-1]
            if "data-i18n" not in top and top.get("id") != "host-get-command":
                self.bare.append(f"<{top['tag']}>{data.strip()}")

    check = Check()
    check.feed((EXTENSION / "popup" / "popup.html").read_text("utf-8"))
    assert check.bare == []


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_fix_command_browser_detection() -> None:
    """lib/browser.js maps the browser's own description to flattr-host's names."""
    script = """
    const vm = require("vm");
    const box = { globalThis: null };
    box.globalThis = box;
    vm.createContext(box);
    vm.runInContext(require("fs").readFileSync(process.argv[1], "utf8"), box);
    const b = box.FlattrBrowser;
    const brands = (...names) => names.map((brand) => ({ brand, version: "130" }));
    const cases = [
      [b.installName(brands("Chromium", "Google Chrome", "Not A(Brand")), "chrome"],
      [b.installName(brands("Not A(Brand", "Chromium", "Microsoft Edge")), "edge"],
      [b.installName(brands("Brave", "Chromium", "Not_A Brand")), "brave"],
      [b.installName(brands("Chromium", "Not_A Brand")), "all"],
      [b.installName(undefined), "all"],
      [b.installName([{ brand: 7 }, null]), "all"],
      [b.installName(undefined, { name: "Firefox", vendor: "Mozilla" }), "firefox"],
      [b.installName(undefined, { name: "LibreWolf" }), "all"],
      [b.fixCommands("edge").join("|"),
       "flattr-host install --browser edge|flattr-host doctor --browser edge"],
    ];
    process.stdout.write(JSON.stringify(cases));
    """
    done = subprocess.run(["node", "-e", script, str(EXTENSION / "lib" / "browser.js")],
                          capture_output=True, text=True, check=True)
    for got, want in json.loads(done.stdout):
        assert got == want


# --- make lint's addons-linter step --------------------------------------------------

LINT = ROOT / "tools" / "lint_extension.py"
LINTER = ROOT / ".npm-tools" / "node_modules" / ".bin" / "addons-linter"


@pytest.mark.skipif(not LINTER.exists(), reason="addons-linter not installed (make npm-tools)")
def test_addons_linter_fails_on_an_unexplained_warning(tmp_path: Path) -> None:
    """The lint (which passes on extension/ in ``make lint``) fails on a copy without
    the gecko data_collection_permissions that addons.mozilla.org requires."""
    source = tmp_path / "src"
    shutil.copytree(EXTENSION, source, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((source / "manifest.json").read_text())
    del manifest["browser_specific_settings"]["gecko"]["data_collection_permissions"]
    (source / "manifest.json").write_text(json.dumps(manifest))
    bad = subprocess.run([sys.executable, str(LINT), "--source", str(source)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "MISSING_DATA_COLLECTION_PERMISSIONS" in bad.stdout
    assert "[FAIL]" in bad.stdout
