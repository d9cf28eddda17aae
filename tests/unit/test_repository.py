"""The repository stands on its own: nothing reads or cites a folder beside it, and
the code speaks of what it does, not of the issues that asked for it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "../" + "shared"  # spelt in two parts so this file does not match itself
SCANNED = ("host", "fake_site", "extension", "tests", "bench", "demo", "docs", ".ci")
SUFFIXES = {".py", ".js", ".json", ".html", ".css", ".md", ".sh", ".cmd", ".toml", ""}
# "issue 7", "end of issue 7 handlers", and an "owner: ..." note in a comment.
PROCESS = re.compile(r"\bissues? #?\d+\b|end of issue|(#|//).*\bowner: ", re.IGNORECASE)


def _files(*tops: str) -> list[Path]:
    out = []
    for top in tops:
        base = ROOT / top
        paths = [base] if base.is_file() else base.rglob("*")
        out += [p for p in paths if p.is_file() and p.suffix in SUFFIXES
                and "__pycache__" not in p.parts and p != Path(__file__).resolve()]
    return out


def test_nothing_reads_or_cites_a_folder_beside_the_repository() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _files(*SCANNED, "Makefile", "README.md",
                                                          "pyproject.toml")
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace")
                                     .splitlines(), 1) if OUTSIDE in line]
    assert hits == []


def test_code_has_no_process_comments() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in _files("host", "fake_site", "extension")
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace")
                                     .splitlines(), 1) if PROCESS.search(line)]
    assert hits == []


def test_the_documents_facts_are_test_data_with_their_source() -> None:
    data = ROOT / "tests" / "data" / "flattr-docs"
    for name in ("examples.json", "fields.json", "errors.json", "README.md"):
        assert (data / name).is_file(), name
    note = (data / "README.md").read_text(encoding="utf-8")
    assert "MIT" in note and "Copyright (c) 2011 Flattr" in note


def test_licence_file_matches_the_metadata() -> None:
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
