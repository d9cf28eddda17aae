"""Helpers the figures share: interleaving, one-shot host sessions, URL lists."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from harness.context import Context
from harness.model import BenchError
from harness.port import Port
from harness.spawn import HELLO_EXTENSION, Command, host_env

T = TypeVar("T")


def interleaved(variants: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """Yield (round, variant), rotating the order each round so none always goes first."""
    n = len(variants)
    for r in range(rounds):
        for i in range(n):
            yield r, variants[(r + i) % n]


def spawn(
    ctx: Context, command: Command, label: str, env_extra: dict[str, str] | None = None,
    home: Path | None = None,
) -> Port:
    """Start ``command`` as Chrome would, with a host home (fresh unless given)."""
    home = home if home is not None else ctx.ws.fresh(label)
    return Port(
        command.argv,
        cwd=command.cwd,
        env=host_env(home, env_extra),
        stderr_path=home.parent / f"{home.name}.stderr",
        timeout_s=ctx.cfg.timeout_s,
    )


@contextmanager
def session(
    ctx: Context, command: Command, label: str, env_extra: dict[str, str] | None = None,
    home: Path | None = None,
) -> Iterator[Port]:
    """A spawned port that has answered ``hello``; closed (EOF) and checked on exit."""
    port = spawn(ctx, command, label, env_extra, home)
    try:
        port.request("hello", extension=HELLO_EXTENSION)
        yield port
    except BaseException:
        port.kill()
        raise
    status = port.close()
    if status != 0:
        raise BenchError(f"{command.name} exited {status} after EOF; {port.stderr_tail()}")


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` takes (perf_counter)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def urls(count: int, prefix: str) -> list[str]:
    """``count`` distinct https URLs (same shape as the SQLite baseline's)."""
    return [f"https://example.com/{prefix}/item-{i:06d}" for i in range(count)]


def queue_counts(state: dict[str, Any]) -> dict[str, Any]:
    """The ``queue`` object of a State, or {} when the host does not report one yet."""
    queue = state.get("queue")
    return queue if isinstance(queue, dict) else {}
