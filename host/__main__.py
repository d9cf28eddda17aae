"""The program's entry: ``python -m flattr_host``, the ``flattr-host`` command and
the launcher the browser runs all start here.

One decision is made here: a browser starting the host (its arguments name the
caller, docs/protocol.md) gets the message loop, anything else is a tool command.
The message loop's way does not import the tools (start-up is the host's main
cost, docs/performance.md).
"""

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the message loop or a tool command; return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    from flattr_host.runtime.caller import looks_like_browser_launch

    if looks_like_browser_launch(args):
        from flattr_host.runtime.stdio import run

        return run(args)
    from flattr_host.tools.cli import main as tool

    return tool(args)


if __name__ == "__main__":
    sys.exit(main())
