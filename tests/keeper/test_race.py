"""Several OS processes refresh the same due credentials; kill -9 in the middle of refreshing.

Real processes, a real OAuth stand-in (the sandbox) with single-use rotating refresh tokens.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from database import credentials
from models.vault import TokenSet
from tests.conftest import make_config

WORKER = Path(__file__).with_name("refresh_worker.py")
pytestmark = pytest.mark.slow


def worker_config(cfg: dict, env: dict, info: dict, **extra) -> dict:
    out = dict(
        cfg,
        BITRIX24_OAUTH_URL=info["oauth"],
        BITRIX24_CLIENT_ID=env["BITRIX24_CLIENT_ID"],
        BITRIX24_CLIENT_SECRET=env["BITRIX24_CLIENT_SECRET"],
        REFRESH_CONCURRENCY=8,
        AUTO_MIGRATE=False,
        REFRESH_BACKOFF_SECONDS=0.05,
    )
    out.update(extra)
    return out


def seed(cfg: dict, sandbox, count: int) -> dict[int, str]:
    """Store `count` due credentials minted at the sandbox; returns credential id → grant id."""
    minted = sandbox.control("POST", "/oauth/tokens", {"provider": "bitrix24", "portal": "portal1", "count": count})[
        "tokens"
    ]
    app = create_app(cfg)
    vault = app.extensions["services"].vault
    now = int(time.time())
    ids = {}
    for n, grant in enumerate(minted):
        tokens = TokenSet(grant["access_token"], grant["refresh_token"], now + 30, now + 180 * 86400)
        cid = vault.store(
            "bitrix24", f"acct-{n}", "portal", tokens, label=grant["grant_id"], endpoint=grant["server_endpoint"]
        )
        ids[cid] = grant["grant_id"]
    app.extensions["db"].dispose()
    return ids


def start_workers(cfg: dict, count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "REFRESH_WORKER_CONFIG": json.dumps(cfg)}
    return [
        subprocess.Popen([sys.executable, str(WORKER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[dict]:
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode == 0:
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


def grants(sandbox, grant_ids) -> dict[str, dict]:
    with ThreadPoolExecutor(16) as pool:
        found = pool.map(sandbox.grant, grant_ids)
    return {g["grant_id"]: g for g in found}


def stored(cfg: dict) -> dict[int, dict]:
    app = create_app(dict(cfg, AUTO_MIGRATE=False))
    vault = app.extensions["services"].vault
    out = {}
    for cid in vault.iter_ids():
        cred = vault.get(cid)
        out[cid] = {
            "refresh": cred.refresh_token,
            "version": cred.version,
            "status": cred.status,
            "error": cred.last_error,
        }
    app.extensions["db"].dispose()
    return out


def test_four_processes_refresh_each_credential_exactly_once(sandbox, storage_config):
    env, info = sandbox
    sandbox.control("DELETE", "/oauth/refreshes")
    cfg = worker_config(storage_config, env, info)
    create_app(dict(cfg, AUTO_MIGRATE=True)).extensions["db"].dispose()
    ids = seed(cfg, sandbox, 1000)

    reports = finish(start_workers(cfg, 4))
    assert len(reports) == 4
    assert sum(r["refreshed"] for r in reports) == 1000
    assert sum(r["failed"] for r in reports) == 0

    counts = sandbox.refreshes("bitrix24")
    assert counts["reuse_attempts"] == 0, "a refresh token was spent twice"
    assert sorted(counts["by_grant"].get(g, 0) for g in ids.values()) == [1] * 1000
    assert len(counts["by_token"]) == 1000 and set(counts["by_token"].values()) == {1}
    newest = grants(sandbox, ids.values())
    rows = stored(cfg)
    for cid, grant_id in ids.items():
        assert rows[cid]["refresh"] == newest[grant_id]["refresh_token"], f"credential {cid} lost its newest pair"
        assert rows[cid]["version"] == 2 and rows[cid]["status"] == "active"


def make_all_due(cfg: dict) -> None:
    app = create_app(dict(cfg, AUTO_MIGRATE=False))
    with app.extensions["db"].write() as conn:
        conn.execute(sa.update(credentials).values(expires_at=int(time.time()) + 30))
    app.extensions["db"].dispose()


def test_kill_9_while_refreshing_loses_no_acknowledged_pair(sandbox, tmp_path):
    env, info = sandbox
    cfg = worker_config(make_config(tmp_path), env, info, REFRESH_LEASE_SECONDS=3.0, HTTP_TIMEOUT_SECONDS=1.0)
    create_app(dict(cfg, AUTO_MIGRATE=True)).extensions["db"].dispose()
    ids = seed(cfg, sandbox, 300)
    rng = random.Random(7)
    for _ in range(6):
        make_all_due(cfg)
        procs = start_workers(cfg, 2)
        time.sleep(rng.uniform(0.3, 1.5))
        for proc in procs:
            if rng.random() < 0.8:
                proc.send_signal(signal.SIGKILL)
        finish(procs)
        time.sleep(3.1)  # let the dead workers' leases expire

    db_path = cfg["DATABASE_PATH"]
    check = subprocess.run(
        [
            "python3",
            "-c",
            f"import sqlite3;print(sqlite3.connect({db_path!r}).execute('PRAGMA integrity_check').fetchone()[0])",
        ],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "ok"

    newest = grants(sandbox, ids.values())
    rows = stored(cfg)
    lost = []
    for cid, grant_id in ids.items():
        behind = newest[grant_id]["rotations"] - (rows[cid]["version"] - 1)
        assert behind in (0, 1), f"credential {cid} is {behind} rotations behind"
        if behind == 0:
            assert rows[cid]["refresh"] == newest[grant_id]["refresh_token"]
        else:
            lost.append(cid)  # killed between the provider's rotation and our commit

    print(f"kill -9 test: {len(lost)} of {len(ids)} credentials caught between rotation and commit")
    # A clean pass finds every credential: refreshes the healthy ones, flags the lost ones, loops on none.
    make_all_due(cfg)
    [report] = finish(start_workers(cfg, 1))
    rows = stored(cfg)
    assert report["refreshed"] == len(ids) - len(lost)
    for cid in lost:
        assert (rows[cid]["status"], rows[cid]["error"]) == ("needs_reauth", "lost_response")
    for cid in set(ids) - set(lost):
        assert rows[cid]["status"] == "active"
