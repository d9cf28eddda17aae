#!/usr/bin/env python3
"""Import-time profile of the host's start-up to its first reply (issue 6).

Spawns ``python -X importtime -m flattr_host <origin>`` (and, for comparison, the
minimal echo host) as Chrome would, sends ``hello``, reads the reply, closes
stdin, and prints the imports sorted by cumulative time, with the share that
comes before the host's own code (interpreter start-up and ``site``, which every
Python host pays). Used for docs/performance.md; run it after changing imports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.port import Port
from harness.spawn import BASELINES, HELLO_EXTENSION, ORIGIN, host_env


def profile(argv: list[str], cwd: Path) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, indented module name) per import, in import order."""
    with tempfile.TemporaryDirectory(prefix="flattr-importtime-") as tmp:
        home = Path(tmp)
        port = Port(argv, cwd=cwd, env=host_env(home), stderr_path=home / "stderr")
        port.request("hello", extension=HELLO_EXTENSION)
        port.close()
        text = (home / "stderr").read_text()
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    return rows


def report(title: str, rows: list[tuple[int, int, str]], top: int) -> None:
    """Print the top-level total and the ``top`` heaviest imports."""
    top_level = [r for r in rows if not r[2].startswith("  ")]
    total = sum(r[0] for r in top_level)
    print(f"## {title}: {len(rows)} modules, {total / 1000:.1f} ms in imports")
    print(f"{'cumulative ms':>14} {'self ms':>8}  module")
    for cumulative, self_us, name in sorted(rows, reverse=True)[:top]:
        print(f"{cumulative / 1000:>14.1f} {self_us / 1000:>8.1f} {name}")
    print()


def main() -> int:
    """Profile the host and the echo host; print both."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    py = sys.executable
    echo = profile([py, "-X", "importtime", str(BASELINES / "echo_host.py"), ORIGIN], BASELINES)
    host = profile([py, "-X", "importtime", "-m", "flattr_host", ORIGIN], Path(py).parent)
    report("echo host (sys, struct, json)", echo, args.top)
    report("flattr-host to its hello reply", host, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
