"""The printed table and bench/results.json."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.model import Config, FigureResult


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _short(text: str, limit: int = 300) -> str:
    """One line: the first line and the last line of a multi-line message, capped."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1:
        text = f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table(results: list[FigureResult]) -> str:
    """A plain-text table: one line per measured row, one per missing figure."""
    head = f"  {'variant':<34} {'median':>10} {'min':>10} {'max':>10} {'n':>3}"
    lines = [head, "-" * len(head)]
    for fig in results:
        lines.append(f"{fig.title} [{fig.unit}], target {fig.target}")
        for row in fig.rows:
            s = row.summary
            mark = "*" if row.role == "candidate" else " "
            lines.append(
                f"{mark} {row.name:<34} {_fmt(s.median):>10} {_fmt(s.minimum):>10} "
                f"{_fmt(s.maximum):>10} {len(s.samples):>3}"
            )
        if fig.status == "measured":
            ratio = "" if fig.ratio is None else f"ratio {fig.ratio:.2f}; "
            verdict = {True: "MET", False: "MISSED", None: "no verdict"}[fig.met]
            lines.append(f"   -> {ratio}{verdict}")
        elif fig.status == "not_available":
            lines.append(f"   -> not available yet: {fig.reason}")
        else:
            lines.append(f"   -> ERROR: {_short(fig.reason)} (full text in results.json)")
        lines.extend(f"      note: {note}" for note in fig.notes)
    lines.append("(* = our host; ratio = host / baseline on the figure's own axis)")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Facts about where the numbers came from."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "real_executable": os.path.realpath(sys.executable),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "commit": commit or None,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, cfg: Config, results: list[FigureResult], extra: dict[str, Any]) -> None:
    """Write results atomically (``<path>.tmp`` then rename)."""
    document = {
        "machine": machine(),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "figures": {fig.key: fig.to_json() for fig in results},
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
