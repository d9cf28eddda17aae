"""The JSON-lines log: levels, redaction, rotation, stderr."""

from __future__ import annotations

import io
import json
import multiprocessing
from pathlib import Path

from flattr_host.core.logs import REDACTED, Logger, log_files, redact


def lines(log_dir: Path) -> list[dict[str, object]]:
    out = []
    for path in log_files(log_dir):
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_records_are_json_lines_with_level_filter(tmp_path: Path) -> None:
    err = io.StringIO()
    log = Logger(tmp_path, "info", stderr=err)
    log.debug("hidden")
    log.info("shown", count=3)
    log.warning("careful", reason="x")
    records = lines(tmp_path)
    assert [r["msg"] for r in records] == ["shown", "careful"]
    assert records[0]["count"] == 3 and records[0]["level"] == "info"
    assert "careful" in err.getvalue() and "shown" not in err.getvalue()


def test_redaction_of_keys_and_bearer_values() -> None:
    value = {"accessToken": "abc", "nested": [{"Authorization": "Bearer xyz"}],
             "text": "sent Authorization: Bearer qqq123 to api", "ok": 1}
    out = redact(value)
    assert out["accessToken"] == REDACTED
    assert out["nested"][0]["Authorization"] == REDACTED
    assert "qqq123" not in out["text"] and out["ok"] == 1
    assert value["accessToken"] == "abc"  # input untouched


def test_registered_secrets_are_scrubbed_everywhere(tmp_path: Path) -> None:
    err = io.StringIO()
    log = Logger(tmp_path, "debug", stderr=err)
    log.add_secret("tok-SECRET-42")
    log.error("odd", detail="the value tok-SECRET-42 leaked into a message")
    text = (tmp_path / "host.log").read_text()
    assert "tok-SECRET-42" not in text and "tok-SECRET-42" not in err.getvalue()
    assert REDACTED in text


def test_exception_has_full_trace(tmp_path: Path) -> None:
    log = Logger(tmp_path, "info", stderr=io.StringIO())
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.exception("failed", exc)
    record = lines(tmp_path)[0]
    assert record["error"] == "ValueError: boom"
    assert "Traceback" in str(record["trace"])


def test_rotation_keeps_the_configured_number_of_files(tmp_path: Path) -> None:
    log = Logger(tmp_path, "info", max_bytes=2000, backups=2, stderr=io.StringIO())
    for index in range(200):
        log.info("line", index=index, pad="x" * 50)
    files = log_files(tmp_path)
    assert [p.name for p in files] == ["host.log.2", "host.log.1", "host.log"]
    assert all(p.stat().st_size <= 2000 for p in files)
    indexes = [r["index"] for r in lines(tmp_path)]
    assert indexes == sorted(indexes) and indexes[-1] == 199


def _writer(log_dir: str, worker: int) -> None:
    log = Logger(Path(log_dir), "info", max_bytes=20000, backups=50, stderr=io.StringIO())
    for index in range(300):
        log.info("w", worker=worker, index=index)


def test_processes_writing_at_once_lose_no_line(tmp_path: Path) -> None:
    procs = [multiprocessing.get_context("spawn").Process(target=_writer,
                                                          args=(str(tmp_path), w))
             for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    records = lines(tmp_path)
    assert len(records) == 900
    assert {(r["worker"], r["index"]) for r in records} == {
        (w, i) for w in range(3) for i in range(300)}


def test_files_are_private(tmp_path: Path) -> None:
    log = Logger(tmp_path / "logs", "info", stderr=io.StringIO())
    log.info("x")
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "logs" / "host.log").stat().st_mode & 0o777 == 0o600


def test_log_files_skip_names_that_only_look_numbered(tmp_path: Path) -> None:
    """"host.log.²" passes str.isdigit() but is no number: skipped, not a crash."""
    for name in ("host.log", "host.log.1", "host.log.2", "host.log.\u00b2", "host.log.x"):
        (tmp_path / name).write_text("")
    assert [p.name for p in log_files(tmp_path)] == ["host.log.2", "host.log.1", "host.log"]
