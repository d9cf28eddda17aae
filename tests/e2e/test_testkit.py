"""The test kit as another project uses it: the plugin from the installed package only.

Each test writes a small project into a temporary folder (docs/testing.md's example,
taken from the document itself, and a deliberately failing test), runs pytest there
as a subprocess (cwd = that folder, so none of this repository's conftest files or
test helpers are visible) and reads its JUnit report and failure artifacts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from flattr_testing.plugin import browser_skip_reason

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\s*```python\n(.*?)```", re.S)

FAILING = '''
def test_deliberately_fails(flattr_browser, flattr_site, flattr_host):
    flattr_site.create_user("bea", active=True)
    page = flattr_browser.open("https://flattr.com/")
    page.wait_event("flattr-installed")
    page.dispatch("flattr-trigger", "{action: 'authentication'}")
    page.wait_event("flattr-authenticate")
    assert page.session_extension() == "not the version", "deliberate failure"
'''

# Another extension (no "key": Chromium derives its id from the folder's path) that
# identifies itself on flattr.com and says hello to the host over native messaging.
OTHER_EXTENSION = {
    "manifest.json": json.dumps({
        "manifest_version": 3, "name": "Other", "version": "2.5",
        "browser_specific_settings": {"gecko": {"id": "other@example.test"}},
        "permissions": ["nativeMessaging"],
        "background": {"service_worker": "bg.js", "scripts": ["bg.js"]},
        "content_scripts": [{"matches": ["https://flattr.com/*"], "js": ["content.js"],
                             "run_at": "document_start"}],
    }),
    "content.js": 'sessionStorage.setItem("extension", "other-2.5");\n'
                  'document.dispatchEvent(new CustomEvent("flattr-installed"));\n',
    "bg.js": 'const port = chrome.runtime.connectNative("com.flattr.companion");\n'
             "port.onMessage.addListener(() => {});\n"
             'port.postMessage({id: 1, type: "hello",'
             ' extension: {id: chrome.runtime.id, version: "2.5", build: "other"}});\n',
}

OTHER = '''
import time
from pathlib import Path


def test_other_extension(flattr_browser_name, flattr_open_browser, flattr_host):
    browser = flattr_open_browser(flattr_browser_name, extension=Path("other"))
    page = browser.open("https://flattr.com/")
    page.wait_event("flattr-installed")
    assert page.session_extension() == "other-2.5"
    deadline = time.monotonic() + 30
    while not [x for x in flattr_host.log_lines() if x.get("msg") == "hello"]:
        assert time.monotonic() < deadline, flattr_host.log_text()
        time.sleep(0.1)
    (hello,) = [x for x in flattr_host.log_lines() if x.get("msg") == "hello"]
    assert hello["build"] == "other"
'''


def processes_using(folder: Path, grace: float = 15.0) -> list[str]:
    """Command lines of live processes that name ``folder`` (waits ``grace`` seconds
    for exiting ones to go)."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in text:
                found.append(text[:300])
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def write_other_extension(folder: Path) -> None:
    (folder / "other").mkdir(exist_ok=True)
    for name, text in OTHER_EXTENSION.items():
        (folder / "other" / name).write_text(text, encoding="utf-8")


def docs_example() -> tuple[str, str]:
    """(file name, code) of the example in docs/testing.md."""
    match = EXAMPLE.search((ROOT / "docs" / "testing.md").read_text(encoding="utf-8"))
    assert match, "docs/testing.md has no '<!-- example: NAME -->' python block"
    return match[1], match[2]


@dataclass
class Outcome:
    returncode: int
    output: str
    results: dict[str, str]  # test name -> "passed" / "failed" / "skipped"
    artifacts: Path


def run_project(folder: Path, files: dict[str, str], *args: str,
                plugin: bool = True) -> Outcome:
    """Write ``files`` into ``folder`` and run pytest there with the installed plugin
    (``plugin=False``: with ``-p no:flattr_testing``)."""
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    # Its own rootdir: nothing of this repository's pytest configuration applies.
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (folder / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["HOME"] = str(folder / "home")
    own = ["--flattr-artifacts=artifacts"] if plugin else ["-p", "no:flattr_testing"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "--junitxml=report.xml", f"--basetemp={folder / 'basetemp'}", *own, *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=540, check=False,
    )
    results: dict[str, str] = {}
    report = folder / "report.xml"
    if report.is_file():
        for case in ET.parse(report).iter("testcase"):  # noqa: S314 - our own pytest wrote it
            kinds = {child.tag for child in case}
            results[case.get("name", "?")] = (
                "failed" if kinds & {"failure", "error"}
                else "skipped" if "skipped" in kinds else "passed"
            )
    return Outcome(done.returncode, done.stdout + done.stderr, results, folder / "artifacts")


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["chromium", "firefox"])
def test_example_project_passes_and_failures_explain_themselves(
    tmp_path: Path, name: str
) -> None:
    reason = browser_skip_reason(name)
    if reason:
        pytest.skip(reason)
    example_name, example = docs_example()
    write_other_extension(tmp_path)
    outcome = run_project(
        tmp_path,
        {example_name: example, "test_failing.py": FAILING, "test_other.py": OTHER},
        f"--flattr-browser={name}",
    )
    browser_case = f"test_flattr_com_signs_in_through_the_extension[{name}]"
    assert outcome.results == {
        browser_case: "passed",
        "test_host_answers_hello": "passed",
        f"test_deliberately_fails[{name}]": "failed",
        # Another extension, by argument: loaded, identified, admitted by the host.
        f"test_other_extension[{name}]": "passed",
    }, outcome.output[-6000:]
    assert outcome.returncode == 1

    # The report explains the failure: the host's log, the journal, the files.
    failure = outcome.output.split("test_deliberately_fails", 1)[1]
    assert "flattr host log" in failure
    assert '"msg": "frame in"' in failure  # the host's own log lines
    assert "flattr fake-site journal" in failure
    assert re.search(r"site GET +/\n", failure), failure[-3000:]
    assert "flattr artifacts" in failure

    folder = outcome.artifacts / "failures" / f"test_failing.py_test_deliberately_fails_{name}"
    assert folder.is_dir(), sorted(p.name for p in outcome.artifacts.rglob("*"))
    log = (folder / "host.log").read_text()
    assert '"msg": "hello"' in log
    journal = json.loads((folder / "journal.json").read_text())
    assert any(e["server"] == "site" and e["path"] == "/" for e in journal), journal
    shots = sorted(folder.glob("*.png"))
    assert shots, sorted(p.name for p in folder.iterdir())
    assert all(shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for shot in shots)
    if name == "firefox":
        assert (folder / "firefox-output.log").is_file()
    # Passing tests leave no failure report behind.
    assert sorted(p.name for p in (outcome.artifacts / "failures").iterdir()) == [folder.name]
    # Everything closed afterwards, the failed test's browser and host included.
    assert processes_using(tmp_path) == []


@pytest.mark.timeout(300)
def test_plugin_is_inert_until_its_fixtures_are_used(tmp_path: Path) -> None:
    """Installed but unused: no options' side effects, no header, no artifacts."""
    outcome = run_project(tmp_path, {"test_plain.py": "def test_plain():\n    assert True\n"})
    assert outcome.results == {"test_plain": "passed"}, outcome.output
    assert "flattr" not in outcome.output.lower()
    assert not outcome.artifacts.exists()
    # Loaded: its options exist. Disabled with -p no:flattr_testing: they do not.
    assert "--flattr-browser" in run_project(tmp_path, {}, "--help").output
    disabled = run_project(tmp_path, {}, "--flattr-browser=firefox", plugin=False)
    assert disabled.returncode != 0 and "unrecognized arguments" in disabled.output


@pytest.mark.timeout(300)
def test_extension_option_sets_the_default(tmp_path: Path) -> None:
    write_other_extension(tmp_path)
    check = (
        "def test_default(flattr_extension, flattr_host):\n"
        "    assert flattr_extension.gecko_id == 'other@example.test'\n"
        "    assert flattr_extension.version == '2.5'\n"
        "    assert 'other@example.test' in flattr_host.env['FLATTR_ALLOWED_EXTENSIONS']\n"
    )
    outcome = run_project(tmp_path, {"test_default.py": check}, "--flattr-extension=other")
    assert outcome.results == {"test_default": "passed"}, outcome.output
    missing = run_project(tmp_path, {}, "--flattr-extension=nowhere")
    assert missing.returncode != 0
    assert "nowhere is not an unpacked extension" in missing.output, missing.output


SELECTION = """
import pytest


@pytest.mark.flattr_browsers("chromium", "firefox")
def test_both(flattr_browser_name):
    pass


def test_unmarked(flattr_browser_name):
    pass
"""


def collected(outcome: Outcome) -> list[str]:
    return sorted(line.split("::", 1)[1] for line in outcome.output.splitlines()
                  if line.startswith("test_sel.py::"))


@pytest.mark.timeout(300)
def test_browser_selection_by_marker_and_option(tmp_path: Path) -> None:
    files = {"test_sel.py": SELECTION}
    assert collected(run_project(tmp_path, files, "--co")) == [
        "test_both[chromium]", "test_both[firefox]", "test_unmarked[chromium]"]
    assert collected(run_project(tmp_path, files, "--co", "--flattr-browser=firefox")) == [
        "test_both[firefox]", "test_unmarked[firefox]"]
    both = run_project(tmp_path, files, "--co", "--flattr-browser=chromium",
                       "--flattr-browser=firefox")
    assert collected(both) == ["test_both[chromium]", "test_both[firefox]",
                               "test_unmarked[chromium]", "test_unmarked[firefox]"]
    bad = run_project(tmp_path, {"test_sel.py": SELECTION.replace('"firefox"', '"safari"')},
                      "--co")
    assert bad.returncode != 0 and "unknown browsers ['safari']" in bad.output, bad.output
