"""``flattr-fake-site`` / ``python -m fake_flattr``: run the simulated flattr.com.

When ready, prints exactly one JSON line on stdout:
``{"site": "https://127.0.0.1:P", "api": "https://127.0.0.1:Q", "ca": "<path>",
"spki": "<base64 sha256 of the leaf SPKI>", "files": "https://127.0.0.1:F"}``.
SIGTERM or Ctrl-C stop it cleanly (exit status 0). Logs go to stderr. Exit status 2
on bad options or when a port cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from . import FakeSiteError

# What the fake site needs beyond the host's dependencies: the `fake-site` extra.
EXTRA_MODULES = ("aiohttp",)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="flattr-fake-site",
                                     description="Simulated flattr.com and api.flattr.com.")
    parser.add_argument("--port", type=int, default=0, help="site port (0 = any free port)")
    parser.add_argument("--api-port", type=int, default=0, help="API port (0 = any free port)")
    parser.add_argument("--push-port", type=int, default=0,
                        help="live push WebSocket port (0 = any free port)")
    parser.add_argument("--api-http-port", type=int, default=0,
                        help="plain-HTTP API port for the button loader (0 = any free port)")
    parser.add_argument("--files-port", type=int, default=0,
                        help="files.flattr.com port (0 = any free port)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep state (SQLite) and certificates here; default: in memory")
    parser.add_argument("--seed", action="store_true", help="load demo users and things")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    args = parser.parse_args(argv)
    for name in ("port", "api_port", "push_port", "api_http_port", "files_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be 0-65535, got {getattr(args, name)}")
    return args


async def run(args: argparse.Namespace) -> None:
    """Start, print the ready line, serve until SIGTERM/SIGINT, stop."""
    from .server import FakeSite

    site = FakeSite(data_dir=args.data_dir, seed=args.seed, port=args.port,
                    api_port=args.api_port, push_port=args.push_port,
                    api_http_port=args.api_http_port, files_port=args.files_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        ready = await site.start()
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await site.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    import importlib.util

    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"flattr-fake-site: {', '.join(missing)} is not installed; the fake site needs "
              "the fake-site extra: pip install 'flattr-companion[fake-site]' (or "
              "pipx inject flattr-companion aiohttp)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(run(args))
    except FakeSiteError as exc:
        print(f"flattr-fake-site: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
