"""Minimal Python native messaging host: the floor a Python host can reach.

It imports only sys, struct and json, reads frames (4-byte native-order
length + UTF-8 JSON object) from stdin and answers each with
``{"id": <id>, "ok": true, "result": {"echo": <type>}}`` on stdout, until EOF.
It does no caller check, no logging and no storage: it is a baseline, not a host.
"""

import json
import struct
import sys


def main() -> int:
    """Echo every request as a reply until stdin closes; return the exit status."""
    read = sys.stdin.buffer.read
    out = sys.stdout.buffer
    while True:
        header = read(4)
        if len(header) < 4:
            return 0
        (length,) = struct.unpack("=I", header)
        message = json.loads(read(length))
        reply = json.dumps(
            {"id": message.get("id"), "ok": True, "result": {"echo": message.get("type")}},
            separators=(",", ":"),
        ).encode()
        out.write(struct.pack("=I", len(reply)) + reply)
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
