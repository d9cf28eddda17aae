"""Cold start: spawn as Chrome does, time to the ``hello`` reply.

Each sample spawns a new process (argv origin, cwd = launcher folder, stdio
pipes), writes ``hello`` at once (as Chrome writes the first message right after
launching), and stops the clock when the reply has been read. The host's data
directory exists from an untimed warm-up start, as it does for a returning user;
the OS page cache is warm for every variant alike. Variants are interleaved.
"""

from __future__ import annotations

import time

from harness.context import Context
from harness.figures.common import interleaved, spawn
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary
from harness.spawn import (
    HELLO_EXTENSION,
    Command,
    module_command,
    python_echo_command,
    python_echo_nosite_command,
)

KEY = "cold_start"
TITLE = "cold start (spawn to hello reply)"
UNIT = "ms"
TARGET = "<= 1.15x the minimal Python echo host"
LIMIT = 1.15


def one_start(ctx: Context, command: Command, home_label: str) -> float:
    """Milliseconds from spawn to the ``hello`` reply; the process is then closed."""
    home = ctx.shared.setdefault(f"cold-home:{home_label}", ctx.ws.fresh(home_label))
    port = spawn(ctx, command, home_label, home=home)
    try:
        request_id = port.next_id()
        port.send({"id": request_id, "type": "hello", "extension": HELLO_EXTENSION})
        reply = port.reply_to(request_id)
        elapsed_ms = (time.perf_counter() - port.spawned_at) * 1000
        if reply.get("ok") is not True:
            raise BenchError(f"{command.name} refused hello: {reply.get('error')!r}")
    except BaseException:
        port.kill()
        raise
    status = port.close()
    if status != 0:
        raise BenchError(f"{command.name} exited {status} after EOF; {port.stderr_tail()}")
    return elapsed_ms


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with interleaved cold-start samples of host and baselines."""
    variants: list[tuple[Command, str]] = [(python_echo_command(), "baseline"),
                                           (python_echo_nosite_command(), "reference")]
    c_echo, why_no_c = ctx.c_echo()
    if c_echo is not None:
        variants.append((c_echo, "reference"))
    else:
        result.notes.append(f"C echo host skipped: {why_no_c}")
    missing: NotAvailable | None = None
    try:
        host, notes = ctx.host()
        result.notes.extend(notes)
        variants.insert(0, (host, "candidate"))
        if host.name != "host (python -m)":
            variants.append((module_command(), "reference"))
    except NotAvailable as exc:
        missing = exc
    samples: dict[str, list[float]] = {command.name: [] for command, _ in variants}
    for command, _ in variants:  # untimed warm-up: page cache, host data directory
        one_start(ctx, command, command.name)
    for _, (command, _) in interleaved(variants, ctx.cfg.cold_rounds):
        samples[command.name].append(one_start(ctx, command, command.name))
    for command, role in variants:
        result.rows.append(Row(command.name, Summary.of(samples[command.name]), role))
    if missing is not None:
        raise missing
    candidate = samples[variants[0][0].name]
    baseline = samples[python_echo_command().name]
    result.ratio = Summary.of(candidate).median / Summary.of(baseline).median
    result.met = result.ratio <= LIMIT
    strict = Summary.of(samples[python_echo_nosite_command().name]).median
    result.notes.append(
        f"against the echo host run with -S as the host's launcher is: "
        f"{Summary.of(candidate).median / strict:.2f}x"
    )
