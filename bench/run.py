#!/usr/bin/env python3
"""Run every benchmark on this machine: ``make bench`` (or ``--quick``).

Each figure is measured against its baseline in the same run (interleaved,
several rounds, medians and min/max), a table is printed and the results are
written to ``bench/results.json``. A figure whose parts have not landed yet is
reported as "not available yet: <reason>"; a figure that fails while measuring is
an error and makes the exit status 1. Targets missed are reported, not failed:
benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report
from harness.context import Context
from harness.figures import (
    cold_start,
    drain,
    enqueue,
    growth,
    handshake,
    idle,
    idle_memory,
    memory,
    round_trip,
)
from harness.model import Config, FigureResult, NotAvailable
from harness.spawn import Workspace

# Order matters: memory reads the host that drain leaves behind.
FIGURES: tuple[ModuleType, ...] = (
    cold_start, round_trip, enqueue, drain, memory, idle_memory, idle, handshake, growth,
)
KEYS = [f.KEY for f in FIGURES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; size flags override the defaults (or ``--quick``'s)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run, seconds)")
    p.add_argument("--only", action="append", choices=KEYS, help="run only this figure")
    p.add_argument("--skip", action="append", choices=KEYS, default=[], help="skip a figure")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary folder")
    p.add_argument("--rounds", type=int, help="rounds for every figure")
    for field in dataclasses.fields(Config):
        flag = f"--{field.name.replace('_', '-')}"
        if field.name in ("quick", "enqueue_batches", "growth_sizes", "growth_procs"):
            continue
        if isinstance(field.default, bool):
            p.add_argument(flag, action="store_true", default=None)
        else:
            p.add_argument(flag, type=type(field.default))
    p.add_argument("--enqueue-batches", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated URLs per flattr request, e.g. 1,100")
    p.add_argument("--growth-sizes", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated store sizes, e.g. 1000,100000,1000000")
    p.add_argument("--growth-procs", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="comma-separated host process counts on one store, e.g. 1,2,4,8")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    """The Config the options describe."""
    cfg = Config.quick_config() if args.quick else Config()
    changes = {}
    if args.rounds is not None:
        changes = {f.name: args.rounds for f in dataclasses.fields(Config)
                   if f.name.endswith("_rounds")}
    for field in dataclasses.fields(Config):
        value = getattr(args, field.name, None)
        if field.name != "quick" and value is not None:
            changes[field.name] = value
    return dataclasses.replace(cfg, **changes)


def run_figure(module: ModuleType, ctx: Context) -> FigureResult:
    """Run one figure; NotAvailable and errors become its status, never a crash."""
    result = FigureResult(module.KEY, module.TITLE, module.UNIT, module.TARGET)
    start = time.perf_counter()
    try:
        module.run(ctx, result)
    except NotAvailable as exc:
        result.status, result.reason = "not_available", str(exc)
    except Exception as exc:
        result.status, result.reason = "error", f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    result.seconds = time.perf_counter() - start
    if result.status != "measured":
        result.ratio = result.met = None
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the selected figures, print the table, write the JSON; 1 if any errored."""
    args = parse_args(argv)
    cfg = make_config(args)
    selected = [f for f in FIGURES if (not args.only or f.KEY in args.only)
                and f.KEY not in args.skip]
    ws = Workspace(keep=args.keep_workdir)
    ctx = Context(cfg, ws)
    results: list[FigureResult] = []
    try:
        for module in selected:
            print(f"... {module.TITLE}", file=sys.stderr, flush=True)
            results.append(run_figure(module, ctx))
    finally:
        ctx.close()
        ws.cleanup()
    print(report.table(results))
    report.write_json(args.out, cfg, results, {"workdir": str(ws.path) if ws.keep else None})
    print(f"wrote {args.out}")
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
