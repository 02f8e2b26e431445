"""deploy.sh --docker with a fake `docker` first on PATH (tests/packaging/fake_docker.py): the steps in order,
a second run changing nothing, refusals before anything is built, --generate-secrets filling only gaps."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from config import ROOT
from scripts.make_env import fernet_key
from scripts.stack import free_port

PUBLIC_URL = "https://apps.example.com/telemost-app"
STEPS = [
    "fake-docker: compose build",
    "fake-docker: compose run --rm app flask --app app check-config",
    "fake-docker: compose run --rm app flask --app app db upgrade",
    "fake-docker: compose up -d",
    "==> ready",
    "fake-docker: compose exec -T app flask --app app doctor",
    f"  Your handler path:           {PUBLIC_URL}/",
]
URL_LINES = [
    f"  Your handler path:           {PUBLIC_URL}/",
    f"  Initial installation path:   {PUBLIC_URL}/install",
    "  Assign permissions (scopes): user, calendar, im, imbot, imopenlines, placement, crm",
    f"  OAuth redirect URI:          {PUBLIC_URL}/auth/bitrix24/callback",
]


class Deployment:
    """A checkout-looking directory with docker-compose.yml, a fake docker on PATH, and its volumes' state."""

    def __init__(self, tmp_path: Path, stack):
        self.dir = tmp_path / "checkout"
        (self.dir / "scripts").mkdir(parents=True)
        for name in ("docker-compose.yml", "Dockerfile", ".env.example", "scripts/make_env.py"):
            shutil.copy(ROOT / name, self.dir / name)
        (self.dir / "app.py").write_text("")
        (self.dir / "requirements.txt").write_text("")
        self.state = tmp_path / "docker-state"
        self.state.mkdir()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        docker = self.bin / "docker"
        docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/tests/packaging/fake_docker.py" "$@"\n')
        docker.chmod(0o755)
        self.port = free_port()
        # The sandbox plays the OAuth server and Telemost for `flask doctor` (never the network).
        self.settings = {
            "PUBLIC_URL": PUBLIC_URL,
            "BITRIX24_CLIENT_ID": "local.0123456789ab.cdef0123",
            "BITRIX24_CLIENT_SECRET": secrets.token_urlsafe(32),
            "BITRIX24_OAUTH_URL": stack.sandbox["oauth"],
            "TELEMOST_API_URL": stack.sandbox["telemost"],
            "APP_PORT": str(self.port),
            "GUNICORN_WORKERS": "1",
        }

    def write_env(self, **values: str) -> Path:
        """`.env` = .env.example with these values (and the test's endpoints) filled in."""
        text = (ROOT / ".env.example").read_text(encoding="utf-8")
        for name, value in {**self.settings, **values}.items():
            text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
            assert count == 1, name
        env = self.dir / ".env"
        env.write_text(text, encoding="utf-8")
        return env

    def full_env(self, **values: str) -> Path:
        """A complete production `.env`."""
        generated = {
            "SESSION_SIGNING_KEY": secrets.token_urlsafe(32),
            "TOKEN_ENCRYPTION_KEY": fernet_key(),
            "ADMIN_API_TOKEN": secrets.token_urlsafe(32),
            "CRON_TOKEN": secrets.token_urlsafe(32),
        }
        return self.write_env(**{**generated, **values})

    def deploy(self, *args: str) -> subprocess.CompletedProcess:
        """Run deploy.sh --docker for this directory."""
        return subprocess.run(
            ["bash", str(ROOT / "deploy.sh"), "--docker", "--app-dir", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={
                "PATH": f"{self.bin}:{os.environ['PATH']}",
                "HOME": str(self.state),
                "LANG": "C.UTF-8",
                "FAKE_DOCKER_STATE": str(self.state),
            },
        )

    def calls(self) -> list[list[str]]:
        """The docker commands run so far."""
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def app_pid(self) -> int | None:
        """The pid of the gunicorn `compose up -d` started, if any."""
        path = self.state / "app.pid"
        return int(path.read_text()) if path.exists() else None

    def stop(self) -> None:
        """Stop the `up -d` gunicorn and wait until it is gone."""
        pid = self.app_pid()
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _in_order(output: str, expected: list[str]) -> list[str]:
    """The expected lines in the order they appear in output (equal to `expected` when the order holds)."""
    lines = output.splitlines()
    found = [(lines.index(line), line) for line in expected if line in lines]
    return [line for _, line in sorted(found)]


@pytest.fixture
def deployment(tmp_path, stack):
    """A Docker deployment directory; its app (if started) is stopped afterwards."""
    made = Deployment(tmp_path, stack)
    yield made
    made.stop()


@pytest.mark.slow
def test_generate_build_migrate_start_wait_doctor_then_the_same_again(deployment):
    admin_token = secrets.token_urlsafe(32)
    env_file = deployment.write_env(ADMIN_API_TOKEN=admin_token)

    first = deployment.deploy("--generate-secrets")

    assert first.returncode == 0, first.stdout + first.stderr
    assert _in_order(first.stdout, STEPS) == STEPS
    assert first.stdout.splitlines()[-1] == f"The app: {PUBLIC_URL}"
    lines = first.stdout.splitlines()
    assert lines[lines.index(URL_LINES[0]) : lines.index(URL_LINES[0]) + 4] == URL_LINES
    # Only the missing secrets were generated, named but never shown; the set one kept.
    assert [line for line in lines if line.startswith("generated ")] == [
        "generated SESSION_SIGNING_KEY",
        "generated TOKEN_ENCRYPTION_KEY",
        "generated CRON_TOKEN",
    ]
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    assert values["ADMIN_API_TOKEN"] == admin_token
    for name in ("SESSION_SIGNING_KEY", "TOKEN_ENCRYPTION_KEY", "CRON_TOKEN", "ADMIN_API_TOKEN"):
        assert len(values[name]) >= 32
        assert values[name] not in first.stdout + first.stderr
    assert env_file.stat().st_mode & 0o777 == 0o600
    # Migrated in the data volume; gunicorn (GUNICORN_ACCESS_LOG from compose) logged the wait in the logs volume.
    with closing(sqlite3.connect(deployment.state / "data" / "app.db")) as conn:
        assert conn.execute("select count(*) from alembic_version").fetchone() == (1,)
    assert "/health/ready" in (deployment.state / "logs" / "access.log").read_text()
    pid = deployment.app_pid()
    env_after_first = env_file.read_bytes()

    second = deployment.deploy("--generate-secrets")

    assert second.returncode == 0, second.stdout + second.stderr
    assert _in_order(second.stdout, STEPS) == STEPS
    assert "Container app Running (up-to-date)" in second.stdout.splitlines()
    assert not [line for line in second.stdout.splitlines() if line.startswith("generated ")]
    assert env_file.read_bytes() == env_after_first
    assert deployment.app_pid() == pid and _alive(pid)
    commands = [" ".join(call) for call in deployment.calls()]
    assert commands[: len(commands) // 2] == commands[len(commands) // 2 :]
    assert commands[: len(commands) // 2] == [
        "compose version --short",
        "compose build",
        "compose run --rm app flask --app app check-config",
        "compose run --rm app flask --app app db upgrade",
        "compose up -d",
        "compose exec -T app flask --app app doctor",
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "error: SESSION_SIGNING_KEY is empty or a placeholder"),  # .env.example's empty default
        ({"full": "1", "CRON_TOKEN": "short"}, "error: CRON_TOKEN is shorter than 32 characters"),
        ({"full": "1", "ADMIN_API_TOKEN": "change-me-" + "x" * 30}, "error: ADMIN_API_TOKEN is empty or a placeholder"),
    ],
)
def test_default_or_weak_secret_is_refused_before_anything_is_built(deployment, values, message):
    values = dict(values)
    full = values.pop("full", None)
    (deployment.full_env if full else deployment.write_env)(**values)
    result = deployment.deploy()
    assert result.returncode == 1
    assert message in result.stderr.splitlines()
    assert [call[:2] for call in deployment.calls()] == [["compose", "version"]]
    assert deployment.app_pid() is None


def test_the_apps_own_validation_stops_before_migrations(deployment):
    """A rule only config.py knows (METRICS_TOKEN, when set, is a secret too): check-config in the image refuses."""
    deployment.full_env(METRICS_TOKEN="short")
    result = deployment.deploy()
    assert result.returncode == 1
    assert "METRICS_TOKEN is too short" in result.stdout + result.stderr
    assert "error: the app refuses this configuration (see above)" in result.stderr.splitlines()
    assert [" ".join(call) for call in deployment.calls()] == [
        "compose version --short",
        "compose build",
        "compose run --rm app flask --app app check-config",
    ]
    assert deployment.app_pid() is None
    assert not (deployment.state / "data" / "app.db").exists()


def test_dry_run_prints_the_plan_and_runs_no_docker(deployment):
    deployment.full_env()
    result = deployment.deploy("--dry-run")
    assert result.returncode == 0, result.stderr
    assert deployment.calls() == []
    plan = [line for line in result.stdout.splitlines() if line.startswith("[dry-run]")]
    assert plan[1:] == [
        "[dry-run] docker compose build",
        "[dry-run] docker compose run --rm app flask --app app check-config",
        "[dry-run] docker compose run --rm app flask --app app db upgrade",
        "[dry-run] docker compose up -d",
        "[dry-run] docker compose exec -T app flask --app app doctor",
    ]
    assert plan[0].startswith("[dry-run] chmod 600 ")
    assert URL_LINES[1] in result.stdout.splitlines()
