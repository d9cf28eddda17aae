"""Round trip: sequential ``get-state`` requests on one process, messages/s.

One process per sample, started and greeted (``hello``) before the clock starts;
then ``rt_messages`` requests, each sent only after the previous reply arrived,
as an extension awaiting each answer does. The echo hosts get the same frames.
"""

from __future__ import annotations

import time

from harness.context import Context
from harness.figures.common import interleaved, session
from harness.model import BenchError, FigureResult, NotAvailable, Row, Summary
from harness.port import encode
from harness.spawn import Command, python_echo_command

KEY = "round_trip"
TITLE = "round trip (sequential get-state)"
UNIT = "msg/s"
TARGET = ">= 0.8x the echo host's messages/s"
LIMIT = 0.8


def messages_per_second(ctx: Context, command: Command) -> float:
    """Messages/s of ``rt_messages`` sequential get-state round trips on one process."""
    count = ctx.cfg.rt_messages
    with session(ctx, command, f"rt-{command.name}") as port:
        frames = [encode({"id": 1000 + i, "type": "get-state"}) for i in range(count)]
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            port.send_raw(frame)
            reply = port.reply_to(1000 + i)
            if reply.get("ok") is not True:
                raise BenchError(f"get-state {i} failed on {command.name}: {reply!r}")
        elapsed = time.perf_counter() - start
    return count / elapsed


def run(ctx: Context, result: FigureResult) -> None:
    """Fill ``result`` with interleaved messages/s of host and echo hosts."""
    variants: list[tuple[Command, str]] = [(python_echo_command(), "baseline")]
    c_echo, why_no_c = ctx.c_echo()
    if c_echo is not None:
        variants.append((c_echo, "reference"))
    else:
        result.notes.append(f"C echo host skipped: {why_no_c}")
    missing: NotAvailable | None = None
    try:
        host, _ = ctx.host()
        variants.insert(0, (host, "candidate"))
    except NotAvailable as exc:
        missing = exc
    samples: dict[str, list[float]] = {command.name: [] for command, _ in variants}
    for _, (command, _) in interleaved(variants, ctx.cfg.rt_rounds):
        samples[command.name].append(messages_per_second(ctx, command))
    for command, role in variants:
        result.rows.append(Row(command.name, Summary.of(samples[command.name]), role))
    result.notes.append(f"{ctx.cfg.rt_messages} sequential requests per sample")
    if missing is not None:
        raise missing
    host_median = Summary.of(samples[variants[0][0].name]).median
    echo_median = Summary.of(samples[python_echo_command().name]).median
    result.ratio = host_median / echo_median
    result.met = result.ratio >= LIMIT
