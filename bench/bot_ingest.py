"""Benchmark of the Open Lines bot webhook under gunicorn, against a hello-world route of the same app.

Prints, from one run (issue 9, Performance):
  - webhook req/s ÷ hello-world req/s at 64 connections        (goal ≥ 0.6)
  - ack latency p50/p99 at 64 connections, and p99 ÷ hello's p99  (goal ≤ 1.5)
  - event-to-transfer delay p50/p99 at a steady 50 events/s      (from the webhook's answer to the sandbox
    portal recording imopenlines.bot.session.operator)
The app runs as in production (gunicorn, 2 workers × 4 threads, SQLite WAL, each worker's inbox thread on),
the sandbox portal's REST rate limit lifted (one portal gets far more new chats here than Bitrix24 allows calls);
the hello-world route is the same app's GET /health (no database). Every webhook request is a distinct,
authenticated ONIMBOTMESSAGEADD of a new Open Lines chat, so each is stored, handed over and recorded.
The app paces its REST calls to one portal at Bitrix24's 2 calls/s (models/bitrix24.py Pacer), so the wrk
phase's thousands of one portal's events take many minutes to hand over: the bench waits --drain-seconds for
them, then sets the rest aside (marked done, counted) and spreads the steady phase over enough portals
(--portals, default rate ÷ 2) that each stays within that pace, as real traffic from many portals would.
Not a test: no assertion, just figures. Needs `wrk` (installed with apt-get when missing).
Usage: python bench/bot_ingest.py [--duration 10] [--connections 64] [--rate 50] [--steady-seconds 10]
                                  [--portals N] [--drain-seconds 30]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from database import Database, bot_inbox, make_url  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.conftest import load_fixture  # noqa: E402

LUA = r"""
local counter = 0
local body_template = [[%BODY%]]
local ids = 0
function setup(thread)
  ids = ids + 1
  thread:set("thread_id", ids)
end
function request()
  counter = counter + 1
  -- thread_id is set per thread by setup() (a global of the thread's Lua state)
  local chat = tostring(thread_id * 10000000 + counter + %OFFSET%)
  local body = body_template:gsub("__CHAT__", chat):gsub("__TS__", tostring(os.time()))
  return wrk.format("POST", "/python_bot/", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""


def ensure_wrk() -> str:
    """wrk, installed from the distribution when missing (the bench's own set-up)."""
    path = shutil.which("wrk")
    if path:
        return path
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def event_form(member_id: str, app_token: str, bot_id: int, domain: str) -> dict[str, str]:
    """An Open Lines ONIMBOTMESSAGEADD (the documented envelope) with __CHAT__/__TS__ placeholders."""
    form = {
        k: v
        for k, v in load_fixture("event-ONIMBOTMESSAGEADD-group.json")["payload"].items()
        if not k.startswith(("data[BOT]", "data[PARAMS][MENTIONED_LIST]"))
    }
    form.update(
        {
            "ts": "__TS__",
            "auth[member_id]": member_id,
            "auth[application_token]": app_token,
            "auth[domain]": domain,
            "data[PARAMS][CHAT_ENTITY_TYPE]": "LINES",
            "data[PARAMS][CHAT_ENTITY_ID]": "livechat|1|__CHAT__|777",
            "data[PARAMS][CHAT_ENTITY_DATA_2]": "LEAD|1|COMPANY|0|CONTACT|0|DEAL|0",
            "data[PARAMS][CHAT_ID]": "__CHAT__",
            "data[PARAMS][DIALOG_ID]": "chat__CHAT__",
            "data[PARAMS][TO_CHAT_ID]": "__CHAT__",
            "data[PARAMS][MESSAGE_ID]": "__CHAT__",
            "data[PARAMS][MESSAGE]": "Здравствуйте, нужна помощь",
            "data[PARAMS][BOT_ID]": str(bot_id),
            "data[PARAMS][CHAT_TYPE]": "L",
            "data[USER][ID]": "777",
            "data[USER][IS_CONNECTOR]": "Y",
            f"data[BOT][{bot_id}][BOT_ID]": str(bot_id),
        }
    )
    return form


def encode(form: dict[str, str]) -> str:
    """application/x-www-form-urlencoded, keeping the placeholders intact."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='_')}" for k, v in form.items())


def run_wrk(wrk: str, url: str, connections: int, duration: int, script: Path | None) -> dict:
    """Run wrk once; requests/s and latency percentiles (ms)."""
    cmd = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout

    def latency(label: str) -> float:
        """A percentile of wrk's latency distribution, in ms."""
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def set_aside(db: Database) -> int:
    """Mark the pending inbox rows no worker holds as done (the wrk phase's backlog); how many."""
    with db.write() as conn:
        return conn.execute(
            sa.update(bot_inbox)
            .where(bot_inbox.c.status == "pending", bot_inbox.c.lease_owner.is_(None))
            .values(status="done", last_error="bench_set_aside")
        ).rowcount


def wait_drained(db: Database, timeout: float = 240) -> float:
    """Seconds until the inbox has no pending row."""
    start = time.time()
    while time.time() - start < timeout:
        with db.read() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).select_from(bot_inbox).where(bot_inbox.c.status == "pending")
            ).scalar()
        if not left:
            break
        time.sleep(0.2)
    return time.time() - start


def steady(stack: Stack, forms: dict[str, dict[str, str]], rate: int, seconds: int, first_chat: int) -> list[float]:
    """Send `rate` events/s for `seconds`, round-robin over the portals' forms; delays (s) from each answer to
    the portal's recorded hand-off."""
    sent: dict[int, float] = {}
    lock = threading.Lock()
    names = sorted(forms)
    bodies = {name: encode(form) for name, form in forms.items()}

    def post(chat: int, name: str) -> None:
        """One event of a new chat; remembers when its answer came."""
        data = bodies[name].replace("__CHAT__", str(chat)).replace("__TS__", str(int(time.time())))
        response = requests.post(
            f"{stack.app_url}/python_bot/",
            data=data,
            timeout=30,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with lock:
            if response.status_code == 200:
                sent[chat] = time.time()

    threads = []
    start = time.time()
    for n in range(rate * seconds):
        time.sleep(max(0.0, start + n / rate - time.time()))
        thread = threading.Thread(target=post, args=(first_chat + n, names[n % len(names)]))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    deadline = time.time() + 120
    done: dict[int, float] = {}
    while time.time() < deadline and len(done) < len(sent):
        for name in names:
            state = stack.control("GET", f"/_sandbox/portals/{name}/state", expect=200)
            done.update(
                {
                    int(a["chat_id"]): a["time"]
                    for a in state["openlines"]
                    if a["action"] == "operator" and int(a["chat_id"]) in sent
                }
            )
        time.sleep(0.5)
    return sorted(done[c] - sent[c] for c in done)


def main() -> None:
    """Run the benchmark once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--steady-seconds", type=int, default=10)
    parser.add_argument("--portals", type=int, default=0, help="portals of the steady phase (default rate ÷ 2)")
    parser.add_argument("--drain-seconds", type=int, default=30)
    args = parser.parse_args()
    portal_count = args.portals or max(1, (args.rate + 1) // 2)
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-bot-"))
    stack = Stack(
        database_path=str(workdir / "app.db"),
        portals=portal_count,
        log_dir=workdir,
        production=True,  # gunicorn.conf.py as production runs it, for the webhook and hello alike
        extra_app_env={"LOG_LEVEL": "WARNING"},
    )
    db = Database(make_url("", stack.database_path), pool_size=2)
    try:
        forms = {}
        for n in range(1, portal_count + 1):
            name = f"portal{n}"
            stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)
            # Bitrix24 lets one portal make 2-5 REST calls/s; thousands of new chats in seconds on one portal
            # exceed that by far, so the portal's leaky bucket is lifted: the figures are the app's, not the portal's.
            stack.control("POST", f"/_sandbox/portals/{name}/limits", {"bucket": 1_000_000, "drain": 1_000_000.0})
            info = stack.control("GET", f"/_sandbox/portals/{name}", expect=200)
            with db.read() as conn:
                bot_id = conn.execute(
                    sa.text("select bot_id from portals where member_id = :m"), {"m": info["member_id"]}
                ).scalar()
            forms[name] = event_form(info["member_id"], info["application_token"], int(bot_id), info["domain"])
        form = forms["portal1"]
        script = workdir / "event.lua"
        script.write_text(LUA.replace("%BODY%", encode(form)).replace("%OFFSET%", "1000000"), encoding="utf-8")

        hello = run_wrk(wrk, f"{stack.app_url}/health", args.connections, args.duration, None)
        hook = run_wrk(wrk, stack.app_url, args.connections, args.duration, script)
        drain = wait_drained(db, args.drain_seconds)
        with db.read() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(bot_inbox)).scalar()
        aside = set_aside(db)
        time.sleep(min(35, args.drain_seconds))  # rows a worker still held (and its pacer's waits) finish first
        aside += set_aside(db)
        delays = steady(stack, forms, args.rate, args.steady_seconds, first_chat=900_000_000)

        print(
            f"hello-world GET /health : {hello['rps']:8.0f} req/s  p50 {hello['p50']:6.2f} ms  "
            f"p99 {hello['p99']:6.2f} ms  (c={args.connections}, {args.duration}s)"
        )
        print(
            f"webhook POST /python_bot/: {hook['rps']:8.0f} req/s  p50 {hook['p50']:6.2f} ms  "
            f"p99 {hook['p99']:6.2f} ms  non-2xx {hook['non2xx']}  {hook['socket_errors']}"
        )
        print(
            f"  events stored {stored} (wrk counted {hook['requests']} answers); waited {drain:.1f}s for the inbox "
            f"to drain, then set {aside} still pending aside (REST paced at 2 calls/s per portal)"
        )
        print(f"ratio webhook/hello req/s : {hook['rps'] / hello['rps']:.2f}   (goal >= 0.6)")
        print(f"ratio webhook/hello p99   : {hook['p99'] / hello['p99']:.2f}   (goal <= 1.5)")
        if delays:
            p99 = delays[min(len(delays) - 1, int(round(0.99 * (len(delays) - 1))))]
            print(
                f"event-to-transfer at {args.rate} ev/s over {portal_count} portals: p50 "
                f"{statistics.median(delays) * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  ({len(delays)} transfers)"
            )
        else:
            print("event-to-transfer: no transfer recorded")
    finally:
        db.dispose()
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
