#!/usr/bin/env python3
"""Import-time profile of the host's start-up to its first reply.

Spawns the host the way its installed launcher runs it (``python -S -X importtime
-c <bootstrap> <origin>``, see host/tools/install.py ``bootstrap_code``) and, for
comparison, the minimal echo host (plain and with ``-S``) as Chrome would, sends
``hello``, reads the reply, closes stdin, and prints the imports sorted by
cumulative time, split at the first reply. Used for docs/performance.md; run it
after changing imports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.port import Port
from harness.spawn import BASELINES, HELLO_EXTENSION, ORIGIN, host_env

Row = tuple[int, int, str, bool]

#: The host's first import after its first reply (runtime.stdio starts it then).
FIRST_AFTER_REPLY = "flattr_host.delivery.submitter"


def profile(argv: list[str], cwd: Path) -> list[Row]:
    """(cumulative us, self us, indented module name, before the reply) per import.

    For the host the split is read from the import tree: the first import after the
    reply is the submitter (runtime.stdio answers, then starts it), so every top-level
    tree completed before the submitter's own began came before the reply (as in
    tests/integration/test_startup_imports.py). The size of stderr when the reply
    was read would count the submitter's first imports as "before" whenever the host
    got to them before this process looked. For a process without a submitter (the
    echo host) stderr's size at the reply is the split: it imports nothing after.
    """
    with tempfile.TemporaryDirectory(prefix="flattr-importtime-") as tmp:
        home = Path(tmp)
        stderr = home / "stderr"
        port = Port(argv, cwd=cwd, env=host_env(home / "home"), stderr_path=stderr)
        port.request("hello", extension=HELLO_EXTENSION)
        at_reply = stderr.stat().st_size
        port.close()
        data = stderr.read_bytes()
    rows = []
    offset = 0
    for raw in data.splitlines(keepends=True):
        offset += len(raw)
        line = raw.decode(errors="replace")
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cumulative_us), int(self_us), name.rstrip(), offset <= at_reply))
    return split_by_tree(rows)


def split_by_tree(rows: list[Row]) -> list[Row]:
    """``rows`` with "before the reply" taken from the import tree when the submitter's
    top-level import is among them; unchanged otherwise."""
    # A top-level import's name has one space before it, a nested one more.
    roots = [i for i, row in enumerate(rows)
             if row[2].startswith(" ") and not row[2].startswith("  ")]
    submitter = next((i for i in roots if rows[i][2].strip() == FIRST_AFTER_REPLY), None)
    if submitter is None:
        return rows
    before = [i for i in roots if i < submitter]
    end = before[-1] + 1 if before else 0  # the submitter's tree starts after it
    return [(c, own, name, i < end) for i, (c, own, name, _) in enumerate(rows)]


def report(title: str, rows: list[Row], top: int) -> None:
    """Print totals before / after the first reply and the ``top`` heaviest imports."""
    def total(before: bool) -> float:
        return sum(r[1] for r in rows if r[3] is before) / 1000

    n_before = sum(1 for r in rows if r[3])
    print(f"## {title}")
    print(f"before the first reply: {n_before} modules, {total(True):.1f} ms (self times)")
    print(f"after it: {len(rows) - n_before} modules, {total(False):.1f} ms")
    print(f"{'cumulative ms':>14} {'self ms':>8}  when    module")
    for cumulative, self_us, name, before in sorted(rows, reverse=True)[:top]:
        when = "before" if before else "after "
        print(f"{cumulative / 1000:>14.1f} {self_us / 1000:>8.1f}  {when}  {name}")
    print()


def main() -> int:
    """Profile the host and the echo host; print both."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    py = sys.executable
    from flattr_host.tools.install import bootstrap_code

    echo_script = str(BASELINES / "echo_host.py")
    echo = profile([py, "-X", "importtime", echo_script, ORIGIN], BASELINES)
    echo_s = profile([py, "-S", "-X", "importtime", echo_script, ORIGIN], BASELINES)
    host = profile([py, "-S", "-X", "importtime", "-c", bootstrap_code(), ORIGIN],
                   Path(py).parent)
    report("echo host (sys, struct, json)", echo, args.top)
    report("echo host with -S", echo_s, args.top)
    report("flattr-host (as its launcher runs it) to its hello reply", host, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
