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
         "--junitxml=report.xml", *own, *args],
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
    outcome = run_project(tmp_path, {example_name: example, "test_failing.py": FAILING},
                          f"--flattr-browser={name}")
    browser_case = f"test_flattr_com_signs_in_through_the_extension[{name}]"
    assert outcome.results == {
        browser_case: "passed",
        "test_host_answers_hello": "passed",
        f"test_deliberately_fails[{name}]": "failed",
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
