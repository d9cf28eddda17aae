"""`flattr-host logs`: rotated files in order, pretty or JSON, level filter, follow
across rotation. Records are written by the real Logger."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from flattr_host.core.logs import Logger, log_files
from flattr_host.tools import logview


def write(log_dir: Path, count: int, level: str = "info", max_bytes: int = 10_000,
          prefix: str = "record") -> Logger:
    log = Logger(log_dir, "debug", max_bytes=max_bytes, backups=3, stderr=io.StringIO())
    for i in range(count):
        log.log(level, f"{prefix} {i}", n=i)
    return log


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flattr_host", "logs", *args],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def test_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    write(tmp_path, 60, max_bytes=2000)
    assert len(log_files(tmp_path)) > 2  # it did rotate
    numbers = [json.loads(line)["n"] for line in logview.read_lines(tmp_path)]
    assert numbers == sorted(numbers) and numbers[-1] == 59
    assert len(numbers) == len(set(numbers))


def test_pretty_line_shows_level_component_message_and_fields() -> None:
    line = json.dumps({"ts": "2024-01-02T03:04:05.678Z", "level": "warning", "pid": 42,
                       "component": "host", "msg": "request refused", "code": "too_large",
                       "error": "frame of 9 bytes"})
    text = logview.format_record(line, as_json=False)
    assert text.startswith("2024-01-02T03:04:05.678Z WARNING host[42] request refused")
    assert 'code=too_large error="frame of 9 bytes"' in text
    assert logview.format_record(line, as_json=True) == line
    assert logview.format_record("not json {", as_json=False) == "not json {"


def test_traceback_is_indented_under_its_record() -> None:
    line = json.dumps({"ts": "t", "level": "error", "pid": 1, "component": "host", "msg": "boom",
                       "trace": "Traceback:\n  File x\nValueError: y\n"})
    text = logview.format_record(line, as_json=False)
    assert text.splitlines()[1:] == ["    Traceback:", "      File x", "    ValueError: y"]


def test_cli_level_filter_json_and_last_lines(tmp_path: Path) -> None:
    log = write(tmp_path / "logs", 3)
    log.warning("careful", n=100)
    log.error("broken", n=101)
    env = {"FLATTR_HOST_HOME": str(tmp_path)}
    done = cli(env, "--level", "warning")
    assert done.returncode == 0, done.stderr
    assert [ln.split("] ", 1)[1] for ln in done.stdout.splitlines()] == [
        "careful  n=100", "broken  n=101"]
    raw = cli(env, "--json", "-n", "2").stdout.splitlines()
    assert [json.loads(ln)["msg"] for ln in raw] == ["careful", "broken"]


def test_cli_without_a_log_says_so(tmp_path: Path) -> None:
    done = cli({"FLATTR_HOST_HOME": str(tmp_path)})
    assert done.returncode == 1 and "no log yet" in done.stderr


class Lines:
    """Lines of a process's stdout, read by a thread (select cannot see buffered text)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self._queue.put(ln.rstrip("\n")) for ln in stream],
                         daemon=True).start()

    def take(self, wanted: int, timeout: float = 15.0) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while len(lines) < wanted:
            try:
                lines.append(self._queue.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
        return lines


def test_follow_prints_new_records_across_rotation(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    write(log_dir, 2, prefix="old")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flattr_host", "logs", "-f", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "FLATTR_HOST_HOME": str(tmp_path), "FLATTR_LOGS_POLL_S": "0.02"},
    )
    lines = Lines(proc)
    try:
        assert [json.loads(ln)["msg"] for ln in lines.take(2)] == ["old 0", "old 1"]
        # Small files: these writes rotate host.log several times while we follow.
        log = Logger(log_dir, "debug", max_bytes=600, backups=5, stderr=io.StringIO())
        seen: list[str] = []
        for i in range(12):
            log.info(f"new {i}", pad="x" * 100)
            seen += [json.loads(ln)["msg"] for ln in lines.take(1)]
        assert seen == [f"new {i}" for i in range(12)]
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def test_follower_handles_partial_lines(tmp_path: Path) -> None:
    (tmp_path / "host.log").write_text("")
    follower = logview.Follower(tmp_path)
    with open(tmp_path / "host.log", "a") as handle:
        handle.write('{"msg": "a"}\n{"msg": ')
    assert follower.poll() == ['{"msg": "a"}']
    with open(tmp_path / "host.log", "a") as handle:
        handle.write('"b"}\n')
    assert follower.poll() == ['{"msg": "b"}']
    assert follower.poll() == []
