#!/usr/bin/env python3
"""Print bench/results.json (or another results file) as the Markdown table in
docs/performance.md: one line per measured series, the verdict per figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def fmt(value: float) -> str:
    """Numbers as the docs show them: thousands separated, 2-3 significant decimals."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """The Markdown table for ``results`` (the JSON bench/run.py writes)."""
    out = [
        "| figure | series | median | min - max | n | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in results["figures"].values():
        verdict = {
            "measured": {True: "met", False: "missed", None: "-"}[fig["met"]],
            "not_available": f"not available yet: {fig['reason']}",
            "error": f"error: {fig['reason'].splitlines()[0] if fig['reason'] else ''}",
        }[fig["status"]]
        if fig["ratio"] is not None:
            verdict += f" (ratio {fig['ratio']:.2f})"
        title = f"{fig['title']} [{fig['unit']}]"
        if not fig["rows"]:
            out.append(f"| {title} | - | - | - | - | {fig['target']} | {verdict} |")
        for i, row in enumerate(fig["rows"]):
            name = f"**{row['name']}**" if row["role"] == "candidate" else row["name"]
            out.append(
                f"| {title if i == 0 else ''} | {name} | {fmt(row['median'])} | "
                f"{fmt(row['min'])} - {fmt(row['max'])} | {row['n']} | "
                f"{fig['target'] if i == 0 else ''} | {verdict if i == 0 else ''} |"
            )
    return "\n".join(out)


def main() -> int:
    """``table.py [results.json]``."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
