"""Benchmark of the conferences feature (issue 8 "Performance"), measured in one run against the live stack.

Prints, all measured in this one run (see bench/README.md for the method):
  1. GET /api/conferences (a user with 1,000 conferences, page of 50) req/s ÷ GET /health req/s, same
     gunicorn (2 workers × 4 threads), wrk with 32 connections (goal ≥ 0.4); GET /api/current-user ÷
     /health beside it (the authenticated path alone). The targets take turns in short wrk rounds and the
     ratio is the median of the rounds' ratios, so a burst of load from elsewhere on the machine during one
     target's turn does not decide the figure;
  2. portal round trips to create a conference with 30 invitees, a calendar event and notifications (goal ≤ 2);
  3. the iframe open (POST /) with 100 ms added to every Bitrix24 call ÷ one such round trip, timed the same
     way from here (goal ≤ 1.3); measured first, on a quiet stack, with the tokens minted outside the timer.
Not a test: no assertion, just figures. Needs Debian's wrk: installed with apt-get when missing.
Usage: python bench/conferences.py [--seconds 8] [--rounds 4] [--connections 32] [--opens 7]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from database import conferences  # noqa: E402
from models.vault import ACCOUNT_SUBJECT, TokenSet  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.integration.helpers import boot_data, frame_post, mint, portal_info  # noqa: E402

LATENCY = 0.1


def ensure_wrk() -> str:
    """Debian's wrk, installed on first use."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def wrk(binary: str, url: str, seconds: int, connections: int, headers: dict | None = None) -> float:
    """Requests per second reported by wrk (non-2xx answers make the figure meaningless: checked first)."""
    probe = requests.get(url, headers=headers, timeout=10)
    if probe.status_code != 200:
        raise SystemExit(f"{url} answered {probe.status_code}: {probe.text[:200]}")
    cmd = [binary, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw error answers:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def seed(stack: Stack, member_id: str, user_id: int, count: int) -> None:
    """A Yandex account for the portal and `count` conferences of the user."""
    app = stack.models_app()
    services = app.extensions["services"]
    portal_id = services.portals.get_by_member(member_id).id
    pair = stack.control("POST", "/_sandbox/oauth/tokens", {"provider": "yandex"}, expect=200)["tokens"][0]
    ts = int(time.time())
    services.vault.store(
        "yandex",
        str(pair["user_id"]),
        ACCOUNT_SUBJECT,
        TokenSet(pair["access_token"], pair["refresh_token"], ts + 10**6, ts + 10**7),
        portal_id=portal_id,
        label=pair["login"],
    )
    with services.db.write() as conn:
        rows = []
        for n in range(count):
            starts = ts + (n - count // 2) * 3600
            rows.append(
                {
                    "portal_id": portal_id,
                    "owner_id": user_id,
                    "owner_name": "Bench",
                    "name": f"Встреча {n}",
                    "search_name": f"встреча {n}",
                    "type": "broadcast" if n % 5 == 0 else "conference",
                    "duration_minutes": 60,
                    "starts_at": starts,
                    "ends_at": starts + 3600,
                    "cohosts": '["a@corp.example"]',
                    "invitees": "[3, 4, 5]",
                    "viewers": "[]",
                    "waiting_room_level": "PUBLIC",
                    "telemost_id": str(10**11 + n),
                    "link": f"https://telemost.yandex.ru/j/{10**11 + n}",
                    "status": "scheduled",
                    "created_at": ts,
                    "updated_at": ts,
                }
            )
        conn.execute(sa.insert(conferences), rows)
    app.extensions["db"].dispose()


def median_ms(values: list[float]) -> float:
    """The median of durations in seconds, in milliseconds."""
    return statistics.median(values) * 1000


def iframe_open(stack: Stack, portal: dict, samples: int) -> tuple[float, float]:
    """(median open, median direct round trip) in ms with LATENCY on the portal and its OAuth server.

    One round trip is timed like the open, from this process: a REST call straight to the sandbox portal.
    The two take turns, and every token is minted before its timer starts.
    """
    for server in ("portal", "oauth"):
        stack.control("POST", "/_sandbox/faults", {"server": server, "mode": "latency", "value": LATENCY}, expect=201)
    opens, trips = [], []
    portal_http = requests.Session()  # keep-alive, like the app's pooled connections: the shorter trip
    try:
        for _ in range(samples):
            tokens = mint(stack, user_id=3)
            started = time.perf_counter()
            answer = portal_http.post(f"{portal['rest']}profile", json={"auth": tokens["access_token"]}, timeout=30)
            trips.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise SystemExit(f"portal call failed: {answer.status_code} {answer.text[:200]}")
            tokens = mint(stack, user_id=3)
            started = time.perf_counter()
            response = frame_post(stack, tokens, application_token=portal["application_token"])
            opens.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"iframe open failed: {response.status_code}")
    finally:
        portal_http.close()
        stack.control("DELETE", "/_sandbox/faults", expect=200)
    return median_ms(opens), median_ms(trips)


def create_round_trips(stack: Stack, auth: dict) -> list[str]:
    """Top-level portal calls (a batch counts once) of one create with 30 invitees, calendar, notifications."""
    stack.control("DELETE", "/_sandbox/portals/portal1/calls", expect=200)
    created = requests.post(
        f"{stack.app_url}/api/conferences",
        headers=auth,
        timeout=60,
        json={
            "name": "Bench",
            "start_date": "2030-01-10",
            "start_time": "10:00",
            "create_calendar_event": True,
            "invite_users": True,
            "invitees": list(range(10, 40)),
        },
    )
    if created.status_code != 201 or created.json()["failed_step"]:
        raise SystemExit(f"create failed: {created.status_code} {created.text[:300]}")
    calls = stack.control("GET", "/_sandbox/portals/portal1/calls", expect=200)
    return [c["method"] for c in calls if c["batch"] is None]


def throughput(
    binary: str, targets: dict[str, tuple[str, dict | None]], seconds: int, rounds: int, connections: int
) -> dict[str, list[float]]:
    """req/s of each target per round; the targets take turns (round 1: a, b, c; round 2: a, b, c …)."""
    figures: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, headers) in targets.items():
            figures[name].append(wrk(binary, url, seconds, connections, headers))
    return figures


def main() -> int:
    """Start the stack, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="wrk seconds per target, split over the rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--opens", type=int, default=7, help="iframe opens (and direct round trips) to time")
    args = parser.parse_args()
    binary = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-conferences-"))
    stack = Stack(
        database_path=str(workdir / "app.db"),
        portals=1,
        workers=2,
        log_dir=workdir,
        extra_app_env={"LOG_LEVEL": "WARNING"},
    )
    try:
        installed = stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
        if installed.get("status") != 200:
            raise SystemExit(f"install failed: {installed}")
        portal = portal_info(stack)
        opened = frame_post(stack, mint(stack, user_id=2), application_token=portal["application_token"])
        token = boot_data(opened.text)["token"]
        auth = {"Authorization": f"Bearer {token}"}

        # 3. first, while nothing else has run: the iframe open with 100 ms on every Bitrix24 call.
        open_ms, trip_ms = iframe_open(stack, portal, args.opens)

        # 2. portal round trips of one create (the seed connects the portal's Yandex account).
        seed(stack, portal["member_id"], 2, 999)  # with the one created next: 1,000
        trips = create_round_trips(stack, auth)

        # 1. the list and the authenticated path against a hello-world route, same server, same run.
        per_run = max(1, args.seconds // max(1, args.rounds))
        figures = throughput(
            binary,
            {
                "health": (f"{stack.app_url}/health", None),
                "list": (f"{stack.app_url}/api/conferences?per_page=50", auth),
                "current_user": (f"{stack.app_url}/api/current-user", auth),
            },
            per_run,
            args.rounds,
            args.connections,
        )
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    hello, listing, me = (statistics.mean(figures[k]) for k in ("health", "list", "current_user"))
    list_rounds = [lst / h for h, lst in zip(figures["health"], figures["list"], strict=True)]
    me_rounds = [m / h for h, m in zip(figures["health"], figures["current_user"], strict=True)]
    print(
        f"GET /api/conferences (1000 rows, page of 50): {listing:.0f} req/s; /health: {hello:.0f} req/s; "
        f"ratio {statistics.median(list_rounds):.2f} (goal ≥ 0.4; median of the rounds "
        f"{', '.join(f'{r:.2f}' for r in list_rounds)}; ratio of the means {listing / hello:.2f})"
    )
    print(
        f"GET /api/current-user: {me:.0f} req/s; ratio {statistics.median(me_rounds):.2f} against /health "
        f"(rounds {', '.join(f'{r:.2f}' for r in me_rounds)})"
    )
    print(
        f"portal round trips for a create with 30 invitees + calendar + notifications: {len(trips)} "
        f"({', '.join(trips)}) (goal ≤ 2)"
    )
    print(
        f"iframe open with {LATENCY * 1000:.0f} ms per Bitrix24 call: {open_ms:.0f} ms; one round trip: "
        f"{trip_ms:.0f} ms; {open_ms / trip_ms:.2f} × one round trip (goal ≤ 1.3; "
        f"{open_ms / (LATENCY * 1000):.2f} × the bare {LATENCY * 1000:.0f} ms)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
