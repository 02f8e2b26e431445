"""Two app hosts (gunicorn, the production gunicorn.conf.py) on one PostgreSQL, behind a round-robin front.

The front stands where nginx's `upstream` stands in production: it is the app's PUBLIC_URL (both hosts
must share it: it is the session tokens' issuer and the base of the handler URLs Bitrix24 calls), and the
sandbox delivers install and bot events to it. Tests also call host A and host B directly, at the same time.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from scripts.stack import ROOT, Stack, free_port, generated_env
from tests.conftest import PG_ADMIN_URL, postgres_available
from tests.multihost.front import Front

BOT_PATH = "/python_bot/"
READY_SECONDS = 90


class TwoHosts(Stack):
    """The sandbox, two gunicorn servers over one PostgreSQL database, and the front before them.

    Reuses Stack's sandbox start, `app_env`, `flask`, `connect_yandex`, `control` and `stop`; `app_url` is
    the front's address (nginx's place), `hosts` the two servers' own addresses.
    """

    def __init__(self, *, database_url: str, log_dir: Path, portals: int, extra_app_env: dict[str, str]):
        self.env = generated_env()
        self.database_url = database_url
        self.front = Front(mirror=(BOT_PATH,))
        self.app_url = self.front.url
        self.app_port = int(self.app_url.rsplit(":", 1)[1])
        self.env["AMOCRM_REDIRECT_URI"] = f"{self.app_url}/auth/amocrm/callback"
        self.env["BITRIX24_REDIRECT_URI"] = f"{self.app_url}/auth/bitrix24/callback"
        self.database_path = str(log_dir / "unused.db")  # DATABASE_URL wins; nothing is written here
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self._logs: list = []
        self.sandbox: dict = {}
        self.hosts: list[str] = []
        try:
            self._start_sandbox(portals, 3600, 0)
            self._migrate()
            # Both hosts boot at once (as two machines would), then each must answer /health/ready.
            started = [self._start_host(name, extra_app_env) for name in ("a", "b")]
            self.hosts = [self._wait_ready(name, proc, url) for name, proc, url in started]
        except BaseException:
            self.stop()
            raise
        self.front.upstreams = list(self.hosts)

    def app_env(self) -> dict[str, str]:
        """Stack's app environment on the shared PostgreSQL database."""
        env = super().app_env()
        env["DATABASE_URL"] = self.database_url
        return env

    def _migrate(self) -> None:
        # Once, before any host starts: what deploy.sh does on the first host of a deploy.
        done = self.flask("db", "upgrade")
        if done.returncode != 0:
            raise RuntimeError(f"migrations failed: {done.stderr[-2000:]}")

    def _start_host(self, name: str, extra: dict[str, str]) -> tuple[str, subprocess.Popen, str]:
        port = free_port()
        env = self.app_env()
        env.update(extra)
        env["AUTO_MIGRATE"] = "0"
        log = self._log(f"app-{name}.log")
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        proc = subprocess.Popen(
            [
                gunicorn,
                "--config",
                str(ROOT / "gunicorn.conf.py"),
                "app:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        self.procs.append(proc)
        return name, proc, f"http://127.0.0.1:{port}"

    def _wait_ready(self, name: str, proc: subprocess.Popen, url: str) -> str:
        # Generous: the suite shares two cores, and a loaded machine boots gunicorn slowly.
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"host {name} exited; see {self.log_dir / f'app-{name}.log'}")
            try:
                if requests.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"host {name} did not become ready in {READY_SECONDS} s; see its log in {self.log_dir}")

    def stop(self) -> None:
        """Stop both hosts, the sandbox and the front."""
        super().stop()
        self.front.stop()


@pytest.fixture(scope="module")
def multihost_database_url():
    """A fresh PostgreSQL schema for this module's hosts (dropped afterwards); skips when no server answers."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432: the two-host test needs it")
    schema = f"multi_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        # application_name tells this run's connections apart in pg_stat_activity.
        yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with admin.begin() as conn:
            # Hosts are stopped by now; a backend still finishing its session must not block the drop.
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def two_hosts(multihost_database_url, tmp_path_factory):
    """Sandbox (3 portals) + host A + host B on one PostgreSQL schema; migrations ran once."""
    log_dir = tmp_path_factory.mktemp("multihost")
    extra = {
        # Bot events wait in the inbox for /tasks/process-events (no per-process worker thread), so the
        # cron runs on both hosts race for every row.
        "BOT_BACKGROUND_WORKER": "0",
        # Small refresh chunks: two runs at once interleave their claims instead of one taking everything.
        "REFRESH_CONCURRENCY": "4",
        "REFRESH_BACKOFF_SECONDS": "0.05",
    }
    stack = TwoHosts(database_url=multihost_database_url, log_dir=log_dir, portals=3, extra_app_env=extra)
    yield stack
    stack.stop()
