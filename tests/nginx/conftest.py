"""One stack for the nginx tests: Debian's nginx with the shipped snippet in front of gunicorn (the production
gunicorn.conf.py, two workers) and the sandbox, whose portals reach the app only through nginx."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from scripts.stack import ROOT, Stack, free_port, start_sandbox

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
PREFIX = "/telemost-bitrix"
ATTEMPTS = 4
METRICS_TOKEN = "m" * 40

# The host-specific values of nginx-integration.conf, each a documented placeholder: upstream, checkout, logs.
UPSTREAM = "127.0.0.1:8000"
CHECKOUT = "/srv/telemost/"
LOG_DIR = "/var/log/nginx/"


class ProxiedStack(Stack):
    """A Stack whose public address (PUBLIC_URL, the sandbox's app URL) is nginx's, under the prefix."""

    def __init__(self, *, public_url: str, **options):
        self.public_url = public_url
        super().__init__(**options)

    def _start_sandbox(self, portals: int, access_ttl: int, port: int) -> None:
        proc, self.sandbox = start_sandbox(
            self._base_env(), self.public_url, self._log("sandbox.log"), portals=portals, access_ttl=access_ttl
        )
        self.procs.append(proc)
        self.base = self.sandbox["base"]

    def app_env(self) -> dict[str, str]:
        """The app's environment, with nginx's address as its public one."""
        return {**super().app_env(), "PUBLIC_URL": self.public_url}


def snippet_for(app_port: int, tmp: Path) -> str:
    """The shipped snippet with its upstream, checkout and log directory replaced, nothing else."""
    text = (ROOT / "nginx-integration.conf").read_text()
    for placeholder in (UPSTREAM, CHECKOUT, LOG_DIR):
        assert placeholder in text, placeholder
    return text.replace(UPSTREAM, f"127.0.0.1:{app_port}").replace(CHECKOUT, f"{ROOT}/").replace(LOG_DIR, f"{tmp}/")


def nginx_conf(tmp: Path, listen: int, app_port: int) -> Path:
    """An nginx.conf for a private nginx: the log format at http level, the snippet in a server block."""
    (tmp / "telemost-bitrix.conf").write_text(snippet_for(app_port, tmp))
    temp_paths = "\n".join(
        f"    {name}_temp_path {tmp}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log error;
events {{ worker_connections 128; }}
http {{
{temp_paths}
    access_log {tmp}/nginx-server-access.log;
    include {ROOT}/nginx-log-format.conf;
    server {{
        listen 127.0.0.1:{listen};
        server_name localhost;
        include {tmp}/telemost-bitrix.conf;
    }}
}}
""")
    return conf


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """nginx on a free port → gunicorn (gunicorn.conf.py, 2 workers) → the app; the sandbox posts to nginx."""
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/install_test_deps.sh installs it)")
    tmp = tmp_path_factory.mktemp("nginx")
    app_port, nginx_port = free_port(), free_port()
    nginx_url = f"http://127.0.0.1:{nginx_port}"
    with open(tmp / "nginx.out", "ab") as out:
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(nginx_conf(tmp, nginx_port, app_port)), "-g", "daemon off;"],
            stdout=out,
            stderr=out,
        )
    stack = None
    try:
        stack = ProxiedStack(
            public_url=f"{nginx_url}{PREFIX}",
            database_path=str(tmp / "app.db"),
            app_port=app_port,
            workers=2,
            log_dir=tmp,
            extra_app_env={
                "GUNICORN_ACCESS_LOG": str(tmp / "gunicorn-access.log"),
                # Nobody may read /metrics without the token, not even this host: the app's own guard is tested.
                "METRICS_ALLOW": "192.0.2.1",
                "METRICS_TOKEN": METRICS_TOKEN,
                "AUTH_THROTTLE_ATTEMPTS": str(ATTEMPTS),
                "AUTH_THROTTLE_WINDOW_SECONDS": "300",
            },
        )

        def nginx_up():
            assert nginx.poll() is None, (tmp / "nginx-error.log").read_text()
            try:
                return requests.get(f"{nginx_url}{PREFIX}/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(nginx_up, what="nginx in front of the app")
        yield {"nginx": nginx_url, "public": f"{nginx_url}{PREFIX}", "app": stack.app_url, "tmp": tmp, "stack": stack}
    finally:
        _stop(nginx)
        if stack is not None:
            stack.stop()
