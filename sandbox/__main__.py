"""CLI: python -m sandbox --port P --app-url URL [--portals N] [--access-ttl S] [--host H] [--verbose]."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .server import start
from .state import SandboxError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="base server port (0 = any free port)")
    parser.add_argument("--app-url", required=True, help="public base URL of the app under test")
    parser.add_argument("--portals", type=int, default=1, help="portals created at start (portal1..N)")
    parser.add_argument("--access-ttl", type=float, default=3600, help="Bitrix24 access token lifetime, seconds")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the sandbox, print its endpoints as one JSON line, serve until SIGINT/SIGTERM."""
    args = parse_args(argv)
    try:
        sandbox = start(
            port=args.port,
            app_url=args.app_url,
            portals=args.portals,
            access_ttl=args.access_ttl,
            host=args.host,
            verbose=args.verbose,
        )
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sandbox: cannot bind: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(json.dumps(sandbox.info), flush=True)  # ASCII-safe whatever the locale
    try:
        while not done.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
