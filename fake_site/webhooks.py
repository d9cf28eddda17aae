"""Partner web hook callbacks (document 001, "Web Hook callbacks").

When an unclaimed thing receives a flattr, the partner owning the thing's
identifier gets a form-encoded POST with ``_event=pendingclickcreate`` and the
event's parameters. A delivery that fails (connection error or a non-2xx answer)
is retried after each delay of ``retry_delays`` in turn, then given up. The
delays come from the server config so tests can make them milliseconds.
Every attempt is logged for the admin API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0)
ATTEMPT_TIMEOUT = 10.0


class WebhookSender:
    """Delivers hooks in background tasks and keeps a log of attempts."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
        self.attempts: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._session: aiohttp.ClientSession | None = None

    def send(self, url: str, form: dict[str, str]) -> None:
        """Schedule delivery of one event (returns at once)."""
        task = asyncio.create_task(self._deliver(url, form, tuple(self.retry_delays)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, url: str, form: dict[str, str]) -> tuple[bool, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
            )
        try:
            async with self._session.post(url, data=form) as resp:
                await resp.read()
                return 200 <= resp.status < 300, f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def _deliver(self, url: str, form: dict[str, str], delays: Sequence[float]) -> None:
        for attempt in range(len(delays) + 1):
            ok, outcome = await self._attempt(url, form)
            self.attempts.append({
                "url": url, "event": form.get("_event"), "form": form,
                "attempt": attempt + 1, "delivered": ok, "outcome": outcome, "time": self._now(),
            })
            async with self._changed:
                self._changed.notify_all()
            if ok:
                return
            if attempt < len(delays):
                await asyncio.sleep(delays[attempt])
        log.warning("web hook to %s given up after %d attempts", url, len(delays) + 1)

    def select(self, delivered: bool | None) -> list[dict[str, Any]]:
        """Logged attempts, optionally only the (un)successful ones."""
        return [a for a in self.attempts if delivered is None or a["delivered"] == delivered]

    async def wait_for(self, count: int, timeout: float,
                       delivered: bool | None) -> tuple[list[dict[str, Any]], bool]:
        """Wait until ``count`` attempts match; returns (attempts, timed_out)."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.select(delivered)) >= count), timeout
                )
                timed_out = False
            except TimeoutError:
                timed_out = True
        return self.select(delivered), timed_out

    def clear(self) -> None:
        """Cancel pending deliveries and forget the log (admin reset)."""
        for task in list(self._tasks):
            task.cancel()
        self.attempts.clear()

    async def close(self) -> None:
        """Cancel pending deliveries and close the HTTP client."""
        self.clear()
        if self._session is not None:
            await self._session.close()
