"""Benchmark of the refresh engine against the sandbox OAuth server with 50 ms latency.

Prints, measured in one run:
  ratio = wall / (N × latency / concurrency)   (1.0 = every request overlapped perfectly)
for N due credentials at concurrency 32 (goal ≤ 1.2) and for a one-at-a-time baseline.
Not a test: no assertion, just figures.  Usage: python bench/refresh.py [--n 10000] [--baseline-n 100]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from app import create_app  # noqa: E402
from models.vault import TokenSet  # noqa: E402
from scripts.stack import running_sandbox  # noqa: E402


def config(workdir: Path, env: dict, info: dict, name: str, concurrency: int) -> dict:
    """A production-like config on its own SQLite file."""
    return {
        "APP_ENV": "testing",
        "SESSION_SIGNING_KEY": env["SESSION_SIGNING_KEY"],
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_PATH": str(workdir / f"{name}.db"),
        "BITRIX24_CLIENT_ID": env["BITRIX24_CLIENT_ID"],
        "BITRIX24_CLIENT_SECRET": env["BITRIX24_CLIENT_SECRET"],
        "BITRIX24_OAUTH_URL": info["oauth"],
        "ALLOW_LOOPBACK_PORTALS": True,
        "REFRESH_CONCURRENCY": concurrency,
        "REFRESH_BUDGET_SECONDS": 3600.0,
        "REFRESH_BATCH_SIZE": 1000,
        "LOG_LEVEL": "WARNING",
    }


def seed(app, info: dict, count: int) -> None:
    """Mint `count` grants at the sandbox and store them as due credentials in one transaction."""
    minted = []
    while len(minted) < count:
        batch = min(5000, count - len(minted))
        response = requests.post(
            f"{info['base']}/_sandbox/oauth/tokens",
            json={"provider": "bitrix24", "portal": "portal1", "count": batch},
            timeout=300,
        )
        response.raise_for_status()
        minted += response.json()["tokens"]
    services = app.extensions["services"]
    now = int(time.time())
    with services.db.write() as conn:
        for n, grant in enumerate(minted):
            tokens = TokenSet(grant["access_token"], grant["refresh_token"], now + 30, now + 180 * 86400)
            services.vault.store(
                "bitrix24", f"bench-{n}", "portal", tokens, endpoint=grant["server_endpoint"], conn=conn
            )


def measure(workdir, env, info, name, count, concurrency, latency) -> dict:
    """Seed, run the engine once, return the figures."""
    app = create_app(config(workdir, env, info, name, concurrency))
    seed(app, info, count)
    started = time.perf_counter()
    report = app.extensions["services"].engine.run(trigger="bench")
    wall = time.perf_counter() - started
    app.extensions["db"].dispose()
    ideal = count * latency / concurrency
    return {
        "name": name,
        "n": count,
        "concurrency": concurrency,
        "wall_s": wall,
        "ideal_s": ideal,
        "ratio": wall / ideal,
        "refreshed": report.refreshed,
        "failed": report.failed,
    }


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--baseline-n", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    try:
        with running_sandbox(workdir / "sandbox.log") as (env, info):
            requests.post(
                f"{info['base']}/_sandbox/faults",
                json={"server": "oauth", "mode": "latency", "value": args.latency, "count": None},
                timeout=10,
            )
            rows = [
                measure(workdir, env, info, "baseline", args.baseline_n, 1, args.latency),
                measure(workdir, env, info, "engine", args.n, args.concurrency, args.latency),
            ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"refresh benchmark: sandbox OAuth latency {args.latency * 1000:.0f} ms, SQLite, one run")
    for row in rows:
        print(
            f"  {row['name']:<9} N={row['n']:<6} concurrency={row['concurrency']:<3} wall={row['wall_s']:.2f}s "
            f"ideal={row['ideal_s']:.2f}s ratio = wall / (N × latency / concurrency) = {row['ratio']:.3f} "
            f"(refreshed {row['refreshed']}, failed {row['failed']})"
        )
    print(
        f"  speed-up over one-at-a-time per credential: "
        f"{(rows[0]['wall_s'] / rows[0]['n']) / (rows[1]['wall_s'] / rows[1]['n']):.1f}×"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
