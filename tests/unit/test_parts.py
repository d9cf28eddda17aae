"""One builder for the host's parts (docs/architecture.md#the-parts).

The message loop's service, the submitter, the attention service, the CLI and the
inspector all open their store with ``open_store`` and build on it with ``build``:
no other module constructs a Store, TokenStore, StateStore or Queue.
"""

from __future__ import annotations

import ast
from pathlib import Path

from flattr_host.core.config import Config
from flattr_host.core.logs import Logger
from flattr_host.core.session import Auth, TokenStored
from flattr_host.storage.parts import build, open_store

HOST = Path(__file__).resolve().parents[2] / "host"
BUILT = {"Store", "TokenStore", "StateStore", "Queue"}
#: The token store signs out through the state store when a token cannot be decrypted.
ALLOWED = {("storage/parts.py", "Store"), ("storage/parts.py", "TokenStore"),
           ("storage/parts.py", "StateStore"), ("storage/parts.py", "Queue"),
           ("storage/token_store.py", "StateStore")}


def constructions() -> set[tuple[str, str]]:
    found = set()
    for path in HOST.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in BUILT):
                found.add((path.relative_to(HOST).as_posix(), node.func.id))
    return found


def test_only_the_builder_wires_the_parts() -> None:
    assert constructions() - ALLOWED == set()


def test_every_entry_point_uses_the_builder() -> None:
    """Each entry point names the builder (a test that breaks if one wires by hand)."""
    users = {"runtime/service.py", "runtime/stdio.py", "delivery/submitter.py",
             "attention/service.py", "tools/cli.py", "runtime/inspector.py"}
    for rel in users:
        tree = ast.parse((HOST / rel).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 and n.module == "flattr_host.storage.parts" for a in n.names}
        assert names & {"build", "open_store"}, rel


def test_the_parts_share_one_store_and_the_configured_key(tmp_path: Path) -> None:
    config = Config(home=str(tmp_path), key_backend="file")
    log = Logger(None)
    with open_store(config, log) as store:
        parts = build(config, store, log)
        assert parts.store is store
        assert parts.states.read().auth is Auth.SIGNED_OUT
        parts.states.apply(TokenStored(True), token="tok-parts")
        assert parts.tokens.load() == "tok-parts"
        assert parts.states.key_location()["backend"] == "file"
        assert (tmp_path / "token.key").exists()
        parts.queue.enqueue(["https://a.example/"], now=1.0)
        assert parts.queue.counts()["pending"] == 1
        parts.close()
    with open_store(config, log) as again:
        assert build(config, again, log).tokens.load() == "tok-parts"
