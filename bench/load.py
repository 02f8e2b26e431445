"""Load test: 200 concurrent clients for 60 s at the app under the production gunicorn settings (issue 11).

Starts the sandbox and the app under `gunicorn --config gunicorn.conf.py` with nothing overridden but the
port (4 gthread workers × 2 threads, SQLite in WAL mode), installs the app in --portals sandbox portals,
then runs locust headless (bench/load_locustfile.py) with a mix of iframe opens, conference list and create,
Open Lines bot events and admin status. Prints requests/s, p50/p99 per request kind, the error count and how
often the app's log says `database is locked`.

The app paces its REST calls at 2 calls/s per portal (models/bitrix24.py Pacer), as Bitrix24 requires:
the users are spread over enough portals that each stays within that pace, as real traffic from many
portals would, and each sandbox portal's own REST limit is lifted (as bench/bot_ingest.py does) so that the
figures are the app's. Not a test: no assertion, just figures (bench/README.md).
Usage: python bench/load.py [--users 200] [--spawn-rate 50] [--seconds 60] [--portals 20] [--wait 0.5 1.5]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from bot_ingest import event_form  # noqa: E402

from database import Database, make_url, portals  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.integration.helpers import boot_data, frame_post, mint, portal_info  # noqa: E402

KINDS = ("iframe open", "conference list", "conference create", "bot event", "admin status")
LOCKED = "database is locked"


def seed_yandex(stack: Stack, member_ids: list[str]) -> None:
    """A sandbox Yandex account for each portal (conference create needs one), stored through the app's models."""
    from models.vault import ACCOUNT_SUBJECT, TokenSet

    app = stack.models_app()
    try:
        services = app.extensions["services"]
        for n, member_id in enumerate(member_ids):
            pair = stack.control("POST", "/_sandbox/oauth/tokens", {"provider": "yandex"}, expect=200)["tokens"][0]
            ts = int(time.time())
            services.vault.store(
                "yandex",
                f"{pair['user_id']}-{n}",  # one account per portal (the sandbox hands out the same Yandex user)
                ACCOUNT_SUBJECT,
                TokenSet(pair["access_token"], pair["refresh_token"], ts + 10**6, ts + 10**7),
                portal_id=services.portals.get_by_member(member_id).id,
                label=pair["login"],
            )
    finally:
        hold = app.extensions.get("db_hold")
        if hold is not None:
            hold.release()
        app.extensions["db"].dispose()


def prepare_portal(stack: Stack, db: Database, name: str, frames: int) -> dict:
    """Install the app in one sandbox portal and collect what its users need."""
    installed = stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)
    if installed.get("status") != 200:
        raise SystemExit(f"install in {name} failed: {installed}")
    stack.control("POST", f"/_sandbox/portals/{name}/limits", {"bucket": 1_000_000, "drain": 1_000_000.0})
    info = portal_info(stack, name)
    with db.read() as conn:
        bot_id = conn.execute(sa.select(portals.c.bot_id).where(portals.c.member_id == info["member_id"])).scalar()
    tokens = [mint(stack, portal=name, user_id=2 + n) for n in range(frames)]
    opened = frame_post(stack, tokens[0], application_token=info["application_token"])
    if opened.status_code != 200:
        raise SystemExit(f"iframe open on {name} failed: {opened.status_code} {opened.text[:200]}")
    return {
        "name": name,
        "member_id": info["member_id"],
        "application_token": info["application_token"],
        "session_token": boot_data(opened.text)["token"],
        "frames": tokens,
        "event_form": event_form(info["member_id"], info["application_token"], int(bot_id), info["domain"]),
    }


def run_locust(plan_path: Path, host: str, users: int, spawn_rate: int, seconds: int, prefix: Path) -> list[str]:
    """locust headless against `host`; its statistics land in <prefix>_stats.csv. Its warnings (CPU) returned."""
    locust = str(Path(sys.executable).parent / "locust")
    cmd = [
        locust,
        "-f",
        str(ROOT / "bench" / "load_locustfile.py"),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{seconds}s",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "10",
    ]
    env = {**os.environ, "LOAD_PLAN": str(plan_path)}
    # locust exits 1 when any request failed: the figures say how many, so that is no reason to stop here.
    done = subprocess.run(cmd, cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return [line for line in done.stderr.decode(errors="replace").splitlines() if "CPU" in line][:3]


def read_stats(prefix: Path) -> dict[str, dict]:
    """Per request kind (and "Aggregated"): requests, failures, req/s, p50, p99 (ms)."""
    out = {}
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            out[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]),
                "p50": float(row["50%"] or 0),
                "p99": float(row["99%"] or 0),
            }
    return out


def read_failures(prefix: Path) -> list[tuple[str, str, int]]:
    """(kind, error, occurrences) from locust's failures file."""
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["Name"], row["Error"], int(row["Occurrences"])) for row in csv.DictReader(handle)]


def count_in_log(path: Path, needle: str) -> int:
    """Lines of a log file that contain `needle` (case-insensitive)."""
    if not path.exists():
        return 0
    needle = needle.lower()
    with open(path, encoding="utf-8", errors="replace") as handle:
        return sum(needle in line.lower() for line in handle)


def measure(args) -> dict:
    """Start the stack, prepare the portals, run locust, collect the figures; stops everything it started."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    stack = Stack(
        database_path=str(workdir / "data" / "app.db"),
        portals=args.portals,
        log_dir=workdir,
        production=True,  # gunicorn.conf.py with nothing but --bind
        # All 200 simulated clients share one address (127.0.0.1), where real ones each have their own: the
        # per-address limit on the token endpoints (RATE_LIMIT_REQUESTS, 300/min) would meter the bench itself.
        extra_app_env={"RATE_LIMIT_REQUESTS": "0"},
    )
    db = Database(make_url("", stack.database_path), pool_size=2)
    try:
        names = [f"portal{n}" for n in range(1, args.portals + 1)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            prepared = list(pool.map(lambda name: prepare_portal(stack, db, name, args.frames), names))
        seed_yandex(stack, [p["member_id"] for p in prepared])
        plan = {
            "portals": prepared,
            "admin_token": stack.env["ADMIN_API_TOKEN"],
            "first_chat": 500_000_000,
            "wait_min": args.wait[0],
            "wait_max": args.wait[1],
        }
        plan_path = workdir / "plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        locked_before = count_in_log(workdir / "app.log", LOCKED)
        started = time.time()
        load_before = os.getloadavg()[0]
        warnings = run_locust(plan_path, stack.app_url, args.users, args.spawn_rate, args.seconds, workdir / "locust")
        wall = time.time() - started
        load_after = os.getloadavg()[0]
        stats = read_stats(workdir / "locust")
        failures = read_failures(workdir / "locust")
    finally:
        db.dispose()
        stack.stop()
    figures = {
        "stats": stats,
        "failures": failures,
        "wall": wall,
        "machine_load": (load_before, load_after, os.cpu_count()),
        "locust_warnings": warnings,
        "locked": count_in_log(workdir / "app.log", LOCKED) - locked_before,
        "server_errors": count_in_log(workdir / "app.log", "Traceback"),
        "workdir": workdir,
    }
    return figures


def report(args, figures: dict) -> None:
    """Print the figures."""
    stats = figures["stats"]
    total = stats.get("Aggregated", {"requests": 0, "failures": 0, "rps": 0.0, "p50": 0, "p99": 0})
    print(
        f"{args.users} users (spawn {args.spawn_rate}/s, think {args.wait[0]}-{args.wait[1]} s) for {args.seconds} s "
        f"over {args.portals} portals; gunicorn.conf.py as in production (4 workers x 2 threads), SQLite WAL"
    )
    print(f"{'kind':<18} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in (*KINDS, "Aggregated"):
        row = stats.get(kind)
        if row:
            print(
                f"{'all' if kind == 'Aggregated' else kind:<18} {row['requests']:>9} {row['failures']:>7} "
                f"{row['rps']:>8.1f} {row['p50']:>8.0f} {row['p99']:>8.0f}"
            )
    print(
        f"requests/s: {total['rps']:.1f}   errors: {total['failures']}   "
        f"'database is locked' in the app log: {figures['locked']}   tracebacks: {figures['server_errors']}"
    )
    before, after, cpus = figures["machine_load"]
    print(f"machine: {cpus} CPUs, load average {before:.1f} before the run, {after:.1f} at its end (locust included)")
    for line in figures["locust_warnings"]:
        print(f"  locust: {line.strip()[:160]}")
    for kind, error, count in figures["failures"][:10]:
        print(f"  {count} x {kind}: {error[:160]}")


def main() -> int:
    """Parse the options, measure once, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spawn-rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--portals", type=int, default=20)
    parser.add_argument("--frames", type=int, default=3, help="Bitrix24 users (token pairs) per portal")
    parser.add_argument("--wait", type=float, nargs=2, default=(0.5, 1.5), metavar=("MIN", "MAX"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, locust CSV)")
    args = parser.parse_args()
    figures = measure(args)
    report(args, figures)
    if args.keep:
        print(f"logs and locust CSV files: {figures['workdir']}")
    else:
        shutil.rmtree(figures["workdir"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
