"""``flattr-host inspect``: watch the live inspectors of running hosts.

Finds hosts by their discovery files (``<home>/inspect/<pid>.json``), connects with
the secret from ``<home>/inspect.secret`` and prints one line per event (or the raw
JSON). The server side is :mod:`flattr_host.runtime.inspector`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from flattr_host.runtime.inspector import DISCOVERY_DIR, SECRET_HEADER, read_secret


def running_hosts(home: Path) -> list[dict[str, Any]]:
    """Discovery records of hosts whose process still exists (stale files removed)."""
    out = []
    for path in sorted((home / DISCOVERY_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            pid, port = int(record["pid"]), int(record["port"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)
            continue
        out.append({"pid": pid, "port": port})
    return out


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(event: dict[str, Any]) -> str:
    """One line for one inspector event."""
    kind = event.get("type")
    if kind in ("hello", "state", "result") and isinstance(
            event.get("state", event.get("result")), dict):
        body = event.get("state", event.get("result"))
        assert isinstance(body, dict)
        if "authenticated" in body:
            q = body.get("queue", {})
            active = body.get("subscription", {}).get("active")
            text = (f"signed in={'yes' if body.get('authenticated') else 'no'} "
                    f"subscription={'active' if active else 'inactive'} "
                    f"pending={q.get('pending')} in flight={q.get('inFlight')} "
                    f"failed={q.get('failed')} paused={q.get('paused') or '-'}")
        else:
            text = " ".join(f"{k}={v}" for k, v in body.items())
        prefix = {"hello": f"connected host {event.get('host', {}).get('version')} ",
                  "state": "state ", "result": f"{event.get('query')} "}[str(kind)]
        return prefix + text
    if kind == "log" and isinstance(event.get("record"), dict):
        from flattr_host.tools.logview import format_record

        return format_record(json.dumps(event["record"]), as_json=False).splitlines()[0]
    return json.dumps(event)


async def _watch(host: dict[str, Any], secret: str, once: bool, as_json: bool,
                 out: Any) -> None:
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{host['port']}/"
    try:
        async with connect(uri, additional_headers={SECRET_HEADER: secret},
                           open_timeout=5, max_size=2**22) as ws:
            async for message in ws:
                raw = message if isinstance(message, str) else message.decode("utf-8")
                event = json.loads(raw)
                out.write((raw if as_json else f"[{host['pid']}] {describe(event)}") + "\n")
                out.flush()
                if once:
                    return
    except (TimeoutError, OSError) as exc:
        out.write(f"[{host['pid']}] cannot connect: {exc}\n")
    except Exception as exc:
        out.write(f"[{host['pid']}] disconnected: {type(exc).__name__}: {exc}\n")


async def _watch_all(home: Path, secret: str, once: bool, as_json: bool, out: Any) -> None:
    tasks: dict[int, asyncio.Task[None]] = {}
    while True:
        for host in running_hosts(home):
            if host["pid"] not in tasks:
                tasks[host["pid"]] = asyncio.create_task(_watch(host, secret, once, as_json, out))
        if once:
            await asyncio.gather(*tasks.values())
            return
        await asyncio.sleep(1.0)  # pick up hosts started later


def client_main(options: Any) -> int:
    from flattr_host.core import config as config_mod

    config = config_mod.load()
    home = Path(config.home)
    secret = read_secret(home)
    hosts = running_hosts(home)
    if secret is None or (options.once and not hosts):
        sys.stderr.write(f"flattr-host: no running host with an inspector in {home} (start "
                         "the browser with FLATTR_INSPECT=1 or set \"inspect\": true in "
                         "config.json)\n")
        return 1
    try:
        asyncio.run(_watch_all(home, secret, options.once, options.json, sys.stdout))
    except KeyboardInterrupt:
        return 130
    return 0
