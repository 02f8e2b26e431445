"""Start the sandbox and the app side by side on free loopback ports (tests, `make demo`, benches).

The sandbox runs as `python -m sandbox` (its stable CLI) and the app under gunicorn from `.venv`,
both with the same generated app credentials, so the whole product works with no real portal.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generated_env() -> dict[str, str]:
    """Fresh secrets and app credentials shared by the sandbox and the app."""
    return {
        "APP_ENV": "development",
        "SESSION_SIGNING_KEY": secrets.token_urlsafe(32),
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ADMIN_API_TOKEN": secrets.token_urlsafe(32),
        "CRON_TOKEN": secrets.token_urlsafe(32),
        "BITRIX24_CLIENT_ID": f"local.{secrets.token_hex(6)}.{secrets.token_hex(4)}",
        "BITRIX24_CLIENT_SECRET": secrets.token_urlsafe(32),
        "YANDEX_CLIENT_ID": secrets.token_hex(16),
        "YANDEX_CLIENT_SECRET": secrets.token_hex(16),
        "AMOCRM_CLIENT_ID": secrets.token_hex(16),
        "AMOCRM_CLIENT_SECRET": secrets.token_hex(32),
        "ALLOW_LOOPBACK_PORTALS": "1",
    }


def start_sandbox(
    env: dict[str, str], app_url: str, log, *, portals: int = 1, access_ttl: int = 3600, port: int = 0
) -> tuple[subprocess.Popen, dict]:
    """Run `python -m sandbox` and return the process and the JSON line it prints first."""
    cmd = [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        str(port),
        "--app-url",
        app_url,
        "--portals",
        str(portals),
        "--access-ttl",
        str(access_ttl),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise RuntimeError(f"sandbox did not start; see {getattr(log, 'name', 'its log')}")
    return proc, json.loads(line)


def clean_environ() -> dict[str, str]:
    """This process's environment without settings that would leak into the sandbox or the app."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "BITRIX24_", "YANDEX_", "AMOCRM_", "TELEMOST_"))
    }


@contextlib.contextmanager
def running_sandbox(
    log_path: Path, *, app_url: str = "http://127.0.0.1:9", extra_env: dict | None = None, **options
) -> Iterator[tuple[dict[str, str], dict]]:
    """A sandbox process alone (no app) with fresh app credentials; yields (env, info), stops it after."""
    env = {**clean_environ(), **generated_env(), **(extra_env or {}), "PYTHONPATH": str(ROOT)}
    with open(log_path, "ab") as log:
        proc, info = start_sandbox(env, app_url, log, **options)
        try:
            yield env, info
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


class Stack:
    """A running sandbox + app pair; `stop()` ends both."""

    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        database_path: str,
        portals: int = 1,
        access_ttl: int = 3600,
        workers: int | None = 2,
        threads: int | None = 4,
        production: bool = False,
        app_port: int | None = None,
        sandbox_port: int = 0,
        log_dir: Path | None = None,
        extra_app_env: dict | None = None,
    ):
        self.env = dict(env or generated_env())
        self.app_port = app_port or free_port()
        self.app_url = f"http://127.0.0.1:{self.app_port}"
        self.env.setdefault("AMOCRM_REDIRECT_URI", f"{self.app_url}/auth/amocrm/callback")
        self.env.setdefault("BITRIX24_REDIRECT_URI", f"{self.app_url}/auth/bitrix24/callback")  # the app card's
        self.database_path = database_path
        self.log_dir = log_dir or Path(database_path).parent
        self.procs: list[subprocess.Popen] = []
        self._logs: list = []
        self.sandbox: dict = {}
        self._start_sandbox(portals, access_ttl, sandbox_port)
        self.threads = threads
        # production=True: gunicorn gets nothing but --bind besides gunicorn.conf.py (the benchmarks);
        # otherwise test-sized workers, threads and timeouts.
        self.production = production
        self._start_app(workers, extra_app_env or {})

    def _base_env(self) -> dict[str, str]:
        env = clean_environ()
        env.update(self.env)
        env["PYTHONPATH"] = str(ROOT)
        return env

    def _log(self, name: str):
        handle = open(self.log_dir / name, "ab")  # closed in stop()
        self._logs.append(handle)
        return handle

    def _start_sandbox(self, portals: int, access_ttl: int, port: int) -> None:
        proc, self.sandbox = start_sandbox(
            self._base_env(), self.app_url, self._log("sandbox.log"), portals=portals, access_ttl=access_ttl, port=port
        )
        self.procs.append(proc)
        self.base = self.sandbox["base"]

    def app_env(self) -> dict[str, str]:
        """The environment the app runs with."""
        env = self._base_env()
        env.update(
            {
                "PUBLIC_URL": self.app_url,
                "DATABASE_PATH": self.database_path,
                "BITRIX24_OAUTH_URL": self.sandbox["oauth"],
                "YANDEX_OAUTH_URL": self.sandbox.get("yandex_oauth", ""),
                "YANDEX_LOGIN_URL": self.sandbox.get("yandex_login", ""),
                "AMOCRM_BASE_URL": self.sandbox.get("amocrm", ""),
                "AMOCRM_AUTHORIZE_URL": f"{self.base}/amocrm/oauth",
                "AMOCRM_REDIRECT_URI": self.env["AMOCRM_REDIRECT_URI"],
                "TELEMOST_API_URL": self.sandbox.get("telemost") or "https://cloud-api.yandex.net/v1/telemost-api",
            }
        )
        return env

    def _start_app(self, workers: int | None, extra: dict) -> None:
        env = self.app_env()
        env.update({k: str(v) for k, v in extra.items()})
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        # Migrate once before the workers start (AUTO_MIGRATE would race between workers).
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        env["AUTO_MIGRATE"] = "0"
        log = self._log("app.log")
        # The production settings (gunicorn.conf.py), with test-sized overrides unless production=True.
        bind = f"127.0.0.1:{self.app_port}"
        command = [gunicorn, "--config", str(ROOT / "gunicorn.conf.py"), "app:app", "--bind", bind]
        if not self.production:
            command += [
                *(["--workers", str(workers)] if workers else []),
                *(["--threads", str(self.threads)] if self.threads else []),
                *("--timeout", "120", "--graceful-timeout", "5", "--no-control-socket"),
            ]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        self.procs.append(proc)
        deadline = time.time() + (60 if self.production else 30)
        while time.time() < deadline:
            if proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"app exited; see {self.log_dir / 'app.log'}")
            try:
                if requests.get(f"{self.app_url}/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"app did not become ready in {60 if self.production else 30} s")

    def models_app(self):
        """The app's models in this process, on the stack's database (the benches seed rows and credentials)."""
        from app import create_app

        env = self.app_env()
        return create_app(
            {
                "APP_ENV": "testing",
                "SESSION_SIGNING_KEY": env["SESSION_SIGNING_KEY"],
                "TOKEN_ENCRYPTION_KEY": env["TOKEN_ENCRYPTION_KEY"],
                "DATABASE_PATH": self.database_path,
                "BITRIX24_CLIENT_ID": env["BITRIX24_CLIENT_ID"],
                "BITRIX24_CLIENT_SECRET": env["BITRIX24_CLIENT_SECRET"],
                "ALLOW_LOOPBACK_PORTALS": True,
                "AUTO_MIGRATE": False,
                "LOG_LEVEL": "WARNING",
            }
        )

    def flask(self, *args: str, extra_env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `flask --app app <args>` with the app's environment (no migration on start); output as text."""
        env = self.app_env()
        env["AUTO_MIGRATE"] = "0"
        env.update({k: str(v) for k, v in (extra_env or {}).items()})
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def connect_yandex(self, member_id: str, login: str = "demo@telemost-demo.example") -> subprocess.CompletedProcess:
        """Connect a sandbox Yandex account to a portal: consent at the sandbox's Yandex OAuth (a login with '@'
        is an organisation account there), then the app's own `flask integrations yandex-connect`."""
        response = requests.get(
            f"{self.sandbox['yandex_oauth']}/authorize",
            params={
                "response_type": "code",
                "client_id": self.env.get("YANDEX_CLIENT_ID", ""),
                "state": "cli",
                "redirect_uri": f"{self.app_url}/auth/yandex/callback",
                "login_hint": login,
            },
            allow_redirects=False,
            timeout=30,
        )
        location = response.headers.get("Location", "")
        code = parse_qs(urlsplit(location).query).get("code", [""])[0]
        if response.status_code != 302 or not code:
            raise RuntimeError(f"the sandbox's Yandex OAuth gave no code (HTTP {response.status_code})")
        return self.flask("integrations", "yandex-connect", "--portal", member_id, "--code", code)

    def control(self, method: str, path: str, json_body=None, expect: int | None = None):
        """Call the sandbox control API; returns parsed JSON (or None for empty bodies)."""
        response = requests.request(method, f"{self.base}{path}", json=json_body, timeout=30)
        if expect is not None and response.status_code != expect:
            raise AssertionError(f"{method} {path} → {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def stop(self) -> None:
        """Stop the app and the sandbox."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self.procs.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()
