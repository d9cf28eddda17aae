"""The benchmark harness (bench/) cannot rot: a smoke run with tiny sizes.

Benchmarks are not tests, so nothing here asserts a speed. What is asserted is
that ``bench/run.py --quick`` runs every figure to "measured" or to "not
available yet: <reason>" (never to an error), writes a well-formed results.json,
and that the baselines it compares against behave (echo host, SQLite inserts).
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from harness.figures.common import interleaved  # noqa: E402
from harness.figures.growth import fmt_size  # noqa: E402
from harness.model import Config, NotAvailable, Summary  # noqa: E402

ALL_FIGURES = {"cold_start", "round_trip", "enqueue", "drain", "memory", "idle_memory", "idle",
               "handshake", "growth"}
# The browser figure is left to `make bench` and the e2e suite: a Chromium launch
# does not fit in a few seconds.
SMOKE_SKIP = {"handshake"}


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack("=I", len(body)) + body


def unframe(data: bytes) -> list[dict[str, Any]]:
    out = []
    while data:
        (length,) = struct.unpack_from("=I", data)
        out.append(json.loads(data[4 : 4 + length]))
        data = data[4 + length :]
    return out


@pytest.fixture(scope="module")
def smoke(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    argv = [sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out)]
    argv += [arg for key in sorted(SMOKE_SKIP) for arg in ("--skip", key)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, f"bench/run.py --quick failed:\n{done.stdout}\n{done.stderr}"
    return done, json.loads(out.read_text())


def test_smoke_run_reports_every_figure_without_error(smoke: Any) -> None:
    done, results = smoke
    figures = results["figures"]
    assert set(figures) == ALL_FIGURES - SMOKE_SKIP
    for key, fig in figures.items():
        assert fig["status"] in ("measured", "not_available"), (key, fig["reason"])
        if fig["status"] == "not_available":
            assert fig["reason"], key
            assert f"not available yet: {fig['reason']}" in done.stdout
        else:
            assert any(row["role"] == "candidate" for row in fig["rows"]), key
            assert isinstance(fig["met"], bool), key
        for row in fig["rows"]:
            assert row["n"] == len(row["samples"]) >= 1
            assert row["min"] <= row["median"] <= row["max"]
            assert all(math.isfinite(x) and x >= 0 for x in row["samples"]), (key, row)


def test_smoke_run_measures_the_baselines(smoke: Any) -> None:
    _, results = smoke
    quick = Config.quick_config()
    figures = results["figures"]
    for key in ("cold_start", "round_trip"):
        rows = {row["name"]: row for row in figures[key]["rows"]}
        echo = rows["echo host (Python)"]
        assert echo["role"] == "baseline" and echo["median"] > 0
        if key == "cold_start":
            assert echo["n"] == quick.cold_rounds
    sqlite_rows = [r for r in figures["enqueue"]["rows"] if r["name"].startswith("raw SQLite")]
    assert len(sqlite_rows) == len(quick.enqueue_batches)
    assert all(row["median"] > 0 for row in sqlite_rows)
    assert results["config"]["quick"] is True


def test_smoke_run_measures_the_host_once_it_exists(smoke: Any) -> None:
    """Once the host can be run, cold start and round trip must measure it."""
    _, results = smoke
    for key in ("cold_start", "round_trip"):
        fig = results["figures"][key]
        assert fig["status"] == "measured", (key, fig["reason"])
        assert fig["ratio"] is not None and fig["ratio"] > 0


def test_smoke_run_measures_idle_memory_and_growth(smoke: Any) -> None:
    """The memory states and every growth size and process count get a row."""
    _, results = smoke
    quick = Config.quick_config()
    idle = results["figures"]["idle_memory"]
    assert idle["status"] == "measured", idle["reason"]
    names = {row["name"]: row for row in idle["rows"]}
    assert names["signed in, restarted"]["role"] == "candidate"
    assert {"signed out", "signed in, token just set", "echo host (Python)"} <= set(names)
    assert any(note.startswith("signed in, restarted: mapped") for note in idle["notes"])
    growth = results["figures"]["growth"]
    assert growth["status"] == "measured", growth["reason"]
    names = {row["name"] for row in growth["rows"]}
    for size in quick.growth_sizes:
        assert f"get-state @ {fmt_size(size)} pending" in names, (size, names)
    for procs in quick.growth_procs:
        assert f"flattr 1 URL, {procs} proc(s) on one store" in names


def test_python_echo_host_answers_each_request_with_its_id() -> None:
    requests = [{"id": 1, "type": "hello"}, {"id": 7, "type": "get-state"}]
    done = subprocess.run(
        [sys.executable, str(BENCH / "baselines" / "echo_host.py"), "chrome-extension://x/"],
        input=b"".join(frame(r) for r in requests), capture_output=True, timeout=30,
    )
    assert done.returncode == 0
    replies = unframe(done.stdout)
    assert [(r["id"], r["ok"], r["result"]["echo"]) for r in replies] == [
        (1, True, "hello"), (7, True, "get-state"),
    ]


def test_sqlite_baseline_commits_every_row_at_full_durability(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite3"
    done = subprocess.run(
        [sys.executable, str(BENCH / "baselines" / "sqlite_insert.py"), "--db", str(db),
         "--count", "25", "--batch", "10"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert measured["rows"] == 25 and measured["seconds"] > 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(DISTINCT url) FROM queue").fetchone()[0] == 25
    finally:
        conn.close()


def test_interleaving_rotates_the_order_each_round() -> None:
    order = [v for _, v in interleaved(["a", "b", "c"], 3)]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_summary_reports_median_min_max() -> None:
    s = Summary.of([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.minimum, s.maximum) == (2.5, 1.0, 10.0)


def test_a_missing_part_is_reported_not_raised() -> None:
    import run  # bench/run.py

    module = ModuleType("fake_figure")
    module.KEY, module.TITLE, module.UNIT, module.TARGET = "x", "x", "ms", "none"

    def missing(ctx: object, result: object) -> None:
        raise NotAvailable("part not landed")

    def broken(ctx: object, result: object) -> None:
        raise ValueError("harness bug")

    module.run = missing
    result = run.run_figure(module, ctx=None)  # type: ignore[arg-type]
    assert (result.status, result.reason) == ("not_available", "part not landed")
    module.run = broken
    result = run.run_figure(module, ctx=None)  # type: ignore[arg-type]
    assert result.status == "error" and "harness bug" in result.reason


def test_startup_profile_splits_at_the_submitters_tree() -> None:
    """The host's imports are split at the reply by the import tree: the submitter's
    tree and all after it are "after", whatever stderr's size said when the reply
    was read; a process without a submitter keeps that split."""
    import profile_startup  # bench/profile_startup.py

    rows = [(5, 5, "     _json", True), (9, 4, " json", True),
            (3, 3, "   threading", True),  # the submitter's, written before the look
            (8, 5, " flattr_host.delivery.submitter", True), (2, 2, " ssl", False)]
    split = profile_startup.split_by_tree(rows)
    assert [before for *_, before in split] == [True, True, False, False, False]
    echo = [(9, 4, " json", True), (1, 1, " struct", False)]
    assert profile_startup.split_by_tree(echo) == echo
