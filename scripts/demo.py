"""`make demo`: the sandbox portal with the app installed in it, until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from dotenv import dotenv_values

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.stack import ROOT, Stack, free_port

DEMO_YANDEX_LOGIN = "demo@telemost-demo.example"  # '@': an organisation account for the sandbox's Telemost


def connect_demo_yandex(stack: Stack, member_id: str) -> str:
    """Connect a sandbox Yandex organisation account to the portal (conferences work at once); the line to print."""
    if not stack.env.get("YANDEX_CLIENT_ID"):
        return "Yandex: not connected (.env has no YANDEX_CLIENT_ID; delete .env and run `make demo` again)"
    try:
        result = stack.connect_yandex(member_id, DEMO_YANDEX_LOGIN)
    except (RuntimeError, OSError) as exc:
        return f"Yandex: not connected ({exc})"
    if result.returncode != 0:
        return f"Yandex: not connected ({(result.stderr or result.stdout).strip().splitlines()[-1:]})"
    return f"Yandex: connected — organisation account {DEMO_YANDEX_LOGIN} on portal1 (create a conference at once)"


def main() -> int:
    """Start everything, install the app on portal1, print where to look."""
    env = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
    env["APP_ENV"] = "development"
    env["ALLOW_LOOPBACK_PORTALS"] = "1"
    data = ROOT / "data"
    data.mkdir(exist_ok=True)
    db = data / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # a fresh demo each time: sandbox portals are new too
    port = int(env.get("DEMO_PORT") or 0) or free_port()
    stack = Stack(env=env, database_path=str(db), portals=2, app_port=port, log_dir=data)
    try:
        portal = stack.sandbox["portals"][0]
        result = stack.control("POST", f"/_sandbox/portals/{portal['name']}/install", {"mode": "event"})
        status = result.get("status") if isinstance(result, dict) else None
        yandex_line = connect_demo_yandex(stack, portal["member_id"])
        print()
        print("  Sandbox Bitrix24 portal with the app installed:")
        print(f"    admin    → {stack.base}/_sandbox/portals/{portal['name']}/open?user_id=1")
        print(f"    employee → {stack.base}/_sandbox/portals/{portal['name']}/open?user_id=2")
        second = stack.sandbox["portals"][1]["name"]
        print("  A second portal to try the installer page (open as admin, the installer runs in the frame):")
        stack.control("POST", f"/_sandbox/portals/{second}/install", {"mode": "installer"})
        print(f"    {stack.base}/_sandbox/portals/{second}/open?user_id=1")
        print(f"  {yandex_line}")
        print(f"  App: {stack.app_url}  (health: {stack.app_url}/health)   install answer: HTTP {status}")
        print(f"  Token keeper: curl -X POST -H 'X-Cron-Token: <CRON_TOKEN from .env>' {stack.app_url}/tasks/refresh")
        print(f"  Logs: {data}/app.log, {data}/sandbox.log.  Ctrl-C to stop.")
        print(flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in stack.procs):
            time.sleep(1)
        print("a process exited; see the logs", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
