"""Keeping a background thread going: one rule for the submitter, the attention
timer and the live inspector (docs/architecture.md, "Threads").

Each of those threads runs a step again and again. A step that raises is logged in
full, reported as the thread's problem in the state (:mod:`flattr_host.core.health`)
with the wait before the next try, and tried again after a backoff from
:mod:`flattr_host.core.retry` (growing from a base to a cap; jittered when a draw
is given, so several hosts on one store do not restart in step). The problem goes
when the thread says it runs again (``health.PROCESS.resolve``: only it knows when
it is well). A thread that ends although nobody stopped it is reported as well.
"""

from __future__ import annotations

from flattr_host.core import health, retry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from threading import Condition

    from flattr_host.core.logs import Logger


class Restarts:
    """The failures of one thread's steps and what follows from each.

    ``component`` and ``code`` name the problem (``submitter``/``delivery_stopped``),
    ``name`` is the thread in the log, ``what`` the stopped function in the message
    the user sees. ``base_s`` and ``cap_s`` are read by the caller when the thread
    starts (tests shorten them).
    """

    def __init__(self, component: str, code: str, name: str, what: str, log: Logger,
                 base_s: float, cap_s: float, draw: Callable[[], float] | None = None) -> None:
        self._component = component
        self._code = code
        self._name = name
        self._what = what
        self._log = log
        self._policy = retry.Policy(base_s, cap_s)
        self._draw = draw
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """Count a failed step, log and report it; return the seconds to wait."""
        self.failures += 1
        if self._draw is None:
            wait = retry.ceiling(self.failures, self._policy)
        else:
            wait = retry.next_attempt_at(0.0, self.failures, self._policy, self._draw())
        self._log.exception(f"{self._name} stopped by an internal error; restarting", exc,
                            restarts=self.failures, in_s=round(wait, 3))
        health.PROCESS.report(
            self._component, self._code,
            f"{self._what} stopped by an internal error ({type(exc).__name__}: "
            f"{str(exc)[:300]}); restarting in {round(wait, 1):g} s")
        return wait

    def wait_after(self, exc: BaseException, cond: Condition,
                   stopping: Callable[[], bool]) -> None:
        """:meth:`failed`, then wait on ``cond`` for the backoff unless ``stopping()``
        (read under ``cond``, which a stop notifies)."""
        wait = self.failed(exc)
        with cond:
            if not stopping():
                cond.wait(wait)

    def reset(self) -> None:
        """A step went well: the next failure is a first one again."""
        self.failures = 0

    def ended(self, stopping: bool) -> None:
        """The thread is leaving; unless it was told to stop, that is a problem."""
        if not stopping:  # only something like SystemExit gets here
            health.PROCESS.report(self._component, self._code,
                                  f"{self._what} stopped: its thread ended")
