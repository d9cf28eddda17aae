"""core.supervise.Restarts: the one rule for restarting a background thread."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from flattr_host.core import health
from flattr_host.core.logs import Logger
from flattr_host.core.supervise import Restarts


@pytest.fixture
def log(tmp_path: Path) -> Logger:
    return Logger(tmp_path, "info", stderr=io.StringIO())


def test_waits_grow_to_the_cap_and_a_good_step_starts_over(log: Logger) -> None:
    health.PROCESS.reset()
    restarts = Restarts("attention", "attention_stopped", "attention timer", "attention",
                        log, 1.0, 5.0)
    waits = [restarts.failed(RuntimeError("bug")) for _ in range(5)]
    assert waits == [1.0, 4.0, 5.0, 5.0, 5.0]  # retry.FACTOR 4, capped
    restarts.reset()
    assert restarts.failed(RuntimeError("bug")) == 1.0
    (problem,) = health.PROCESS.problems()
    assert problem["component"] == "attention" and problem["code"] == "attention_stopped"
    assert problem["message"] == ("attention stopped by an internal error "
                                  "(RuntimeError: bug); restarting in 1 s")
    health.PROCESS.reset()


def test_a_draw_jitters_the_wait_within_the_ceiling(log: Logger, tmp_path: Path) -> None:
    health.PROCESS.reset()
    low = Restarts("submitter", "delivery_stopped", "submitter", "delivery", log, 1.0, 300.0,
                   draw=lambda: 0.0)
    high = Restarts("submitter", "delivery_stopped", "submitter", "delivery", log, 1.0, 300.0,
                    draw=lambda: 1.0)
    for _ in range(3):
        assert low.failed(OSError("x")) <= high.failed(OSError("x")) <= 16.0
    assert high.failures == 3
    text = (tmp_path / "host.log").read_text()
    assert "submitter stopped by an internal error; restarting" in text
    assert "Traceback" in text or "OSError" in text  # logged in full
    health.PROCESS.reset()


def test_a_thread_leaving_unasked_is_a_problem_a_stop_is_not(log: Logger) -> None:
    health.PROCESS.reset()
    restarts = Restarts("inspector", "inspector_stopped", "inspector", "the live inspector",
                        log, 1.0, 5.0)
    restarts.ended(stopping=True)
    assert health.PROCESS.problems() == []
    restarts.ended(stopping=False)
    (problem,) = health.PROCESS.problems()
    assert problem["message"] == "the live inspector stopped: its thread ended"
    health.PROCESS.reset()


def test_wait_after_waits_the_backoff_unless_stopping(log: Logger) -> None:
    import threading

    class Recording(threading.Condition):
        def __init__(self) -> None:
            super().__init__()
            self.waits: list[float | None] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.waits.append(timeout)
            return False

    health.PROCESS.reset()
    restarts = Restarts("attention", "attention_stopped", "attention timer", "attention",
                        log, 1.0, 300.0)
    cond = Recording()
    restarts.wait_after(RuntimeError("bug"), cond, lambda: True)  # stopping: no wait
    assert cond.waits == []
    restarts.wait_after(RuntimeError("bug"), cond, lambda: False)
    assert cond.waits == [4.0]  # the second failure's backoff
    assert restarts.failures == 2
    health.PROCESS.reset()
