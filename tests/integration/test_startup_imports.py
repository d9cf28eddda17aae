"""What the host loads before its first reply, spawned through its real launcher.

Start-up is the host's main cost (docs/performance.md, cold start): the modules
below are kept off the way to the ``hello`` reply on purpose, each for a measured
reason. ``-X importtime`` (through ``PYTHONPROFILEIMPORTTIME``) writes every import
to stderr as it completes, a module's own imports first and indented under it.

The split at the reply is read from that tree, not from the time the test reads
the reply (the host goes on at once, and on a loaded machine its next imports may
already be written): after the reply the loop first imports the submitter, so
every import tree that completes before ``flattr_host.delivery.submitter``'s own
tree began was imported on the way to the reply.
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
    "hashlib": "maps OpenSSL's libcrypto; key ids use the built-in SHA-256",
    "ssl": "TLS is set up for the first batch",
    "http.client": "the API client connects for the first batch",
    "secretstorage": "the keyring is asked when a key is needed (it imports cryptography)",
    "typing": "annotations are strings; typing is for the type checker",
}


#: The first import after the reply (runtime.stdio: reply, then the submitter starts).
FIRST_AFTER_REPLY = "flattr_host.delivery.submitter"


def import_lines(text: bytes) -> list[tuple[int, str]]:
    """``(depth, module)`` per ``-X importtime`` line, in the order they completed."""
    found = []
    for line in text.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        name = line.rsplit("|", 1)[1]
        found.append(((len(name) - len(name.lstrip(" ")) - 1) // 2, name.strip()))
    return found


def split_at_reply(lines: list[tuple[int, str]]) -> set[str]:
    """The modules of every top-level import tree completed before the submitter's."""
    roots = [i for i, (depth, _) in enumerate(lines) if depth == 0]
    submitter = next(i for i in roots if lines[i][1] == FIRST_AFTER_REPLY)
    before = [i for i in roots if i < submitter]
    end = before[-1] + 1 if before else 0  # the submitter's tree starts after it
    return {name for _, name in lines[:end]}


def imports_of_a_start(launcher: Path, home: Path, tmp: Path) -> tuple[set[str], set[str]]:
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
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert reply["ok"] is True, reply
    lines = import_lines(stderr_path.read_bytes())
    return split_at_reply(lines), {name for _, name in lines}


def test_the_split_reads_the_import_tree() -> None:
    text = b"".join(b"import time: 1 | 2 | " + line.encode() + b"\n" for line in [
        "   json.decoder", " json", " flattr_host.runtime.stdio",
        "   threading", "     random", " flattr_host.delivery.submitter", " ssl"])
    assert split_at_reply(import_lines(text)) == {"json.decoder", "json",
                                                  "flattr_host.runtime.stdio"}


def test_the_hello_path_loads_only_what_the_reply_needs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    launcher = install_launcher(tmp_path / "profile", home)
    imports_of_a_start(launcher, home, tmp_path)  # creates the store
    before, everything = imports_of_a_start(launcher, home, tmp_path)
    assert "flattr_host.runtime.stdio" in before and "_sqlite3" in before  # it did split
    loaded = {name: why for name, why in KEPT_OFF.items() if name in before}
    assert loaded == {}
    # The submitter did start after the reply: the split is not an artefact.
    assert "flattr_host.delivery.submitter" in everything
