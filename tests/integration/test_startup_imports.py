"""What the host loads before its first reply, spawned through its real launcher.

Start-up is the host's main cost (docs/performance.md, cold start): the modules
below are kept off the way to the ``hello`` reply on purpose, each for a measured
reason. ``-X importtime`` (through ``PYTHONPROFILEIMPORTTIME``) writes every import
to stderr as it happens; stderr is a file, so its size once the reply is read
splits the imports into before and after the reply.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from flattr_testing.host import CHROMIUM_ID, HEADER, ORIGIN, frame, install_launcher

#: Never before the first reply, and why (docs/performance.md).
KEPT_OFF = {
    "argparse": "the tools' parser: a browser launch never parses options",
    "flattr_host.tools.cli": "the tools: flattr_host.__main__ runs the loop directly",
    "flattr_host.protocol.urls": "1.4 ms of URL regexes; hello carries no URL",
    "flattr_host.delivery.submitter": "threads, HTTP and TLS start after the reply",
    "flattr_host.attention.engine": "the attention engine loads on its first request",
    "datetime": "only the sqlite3 package's date adapters need it (store uses _sqlite3)",
    "signal": "its enums; the loop sets SIGTERM through _signal",
    "threading": "the submitter's; the writer's lock comes from _thread",
    "cryptography": "the token is decrypted when a batch is due",
    "typing": "annotations are strings; typing is for the type checker",
}


def imports_before_reply(launcher: Path, home: Path, tmp: Path) -> tuple[set[str], set[str]]:
    """(modules imported before the hello reply, all imported until exit)."""
    stderr_path = tmp / "stderr"
    env = {**os.environ, "FLATTR_HOST_HOME": str(home), "PYTHONPROFILEIMPORTTIME": "1"}
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen([str(launcher), ORIGIN], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr,
                                cwd=str(launcher.parent), env=env)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(frame({"id": 1, "type": "hello", "extension": {
            "id": CHROMIUM_ID, "version": "1.0", "build": "test"}}))
        proc.stdin.flush()
        (size,) = HEADER.unpack(proc.stdout.read(HEADER.size))
        reply = json.loads(proc.stdout.read(size))
        at_reply = stderr_path.stat().st_size
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert reply["ok"] is True, reply
    data = stderr_path.read_bytes()

    def names(text: bytes) -> set[str]:
        return {line.rsplit(b"|", 1)[1].strip().decode() for line in text.splitlines()
                if line.startswith(b"import time:") and b"cumulative" not in line}

    return names(data[:at_reply]), names(data)


def test_the_hello_path_loads_only_what_the_reply_needs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    launcher = install_launcher(tmp_path / "profile", home)
    imports_before_reply(launcher, home, tmp_path)  # creates the store (not timed anyway)
    before, everything = imports_before_reply(launcher, home, tmp_path)
    assert "flattr_host.runtime.stdio" in before and "_sqlite3" in before  # it did split
    loaded = {name: why for name, why in KEPT_OFF.items() if name in before}
    assert loaded == {}
    # The submitter did start after the reply: the split is not an artefact.
    assert "flattr_host.delivery.submitter" in everything
