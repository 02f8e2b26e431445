"""The shipped nginx snippet in front of gunicorn (two workers), over real HTTP on 127.0.0.1.

The attacks of issue 7 findings 3, 8, 9 and 11 as a client would make them: a doubled path prefix,
percent-encoded secret names in URLs, bodies that crashed the parser, and a burst of wrong cron tokens
spread over both workers. Skipped when nginx is not installed (scripts/install_test_deps.sh installs it).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from database import Database, auth_failures, make_url
from scripts.stack import ROOT, clean_environ, free_port, generated_env

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
SECRET = "q7w8e9r0t1y2u3i4o5p6a7s8d9f0g1h2"
ATTEMPTS = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed: live proxy tests skipped"),
]


def _wait_for(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited; see {log}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in 30 s; see {log}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _nginx_conf(tmp: Path, listen: int, app_port: int) -> Path:
    snippet = (ROOT / "nginx-integration.conf").read_text()
    snippet = (
        snippet.replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
        .replace("/srv/telemost/", f"{ROOT}/")
        .replace("/var/log/nginx/access.log", str(tmp / "nginx-access.log"))
    )
    (tmp / "telemost-app.conf").write_text(snippet)
    temp_paths = "\n".join(
        f"    {name}_temp_path {tmp}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
{temp_paths}
    access_log {tmp}/nginx-server-access.log;
    include {ROOT}/nginx-log-format.conf;
    server {{
        listen 127.0.0.1:{listen};
        server_name localhost;
        include {tmp}/telemost-app.conf;
    }}
}}
""")
    return conf


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """gunicorn (2 workers, access log on) behind nginx with the shipped snippet; yields their addresses."""
    tmp = tmp_path_factory.mktemp("live-proxy")
    app_port, nginx_port = free_port(), free_port()
    env = {
        **clean_environ(),
        **generated_env(),
        "PYTHONPATH": str(ROOT),
        "DATABASE_PATH": str(tmp / "app.db"),
        "PUBLIC_URL": f"http://127.0.0.1:{nginx_port}/telemost-app",
        "BITRIX24_OAUTH_URL": "http://127.0.0.1:9",
        # Nobody may read /metrics without the token, not even this host: the app's own guard is tested.
        "METRICS_ALLOW": "192.0.2.1",
        "METRICS_TOKEN": "m" * 40,
        "AUTH_THROTTLE_ATTEMPTS": str(ATTEMPTS),
        "AUTH_THROTTLE_WINDOW_SECONDS": "300",
        "BASE_PATH": "/telemost-app",
    }
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    env["AUTO_MIGRATE"] = "0"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with open(tmp / "gunicorn.out", "ab") as out:
        app = subprocess.Popen(
            [
                gunicorn,
                "app:app",
                "--bind",
                f"127.0.0.1:{app_port}",
                "--workers",
                "2",
                "--no-control-socket",
                "--access-logfile",
                str(tmp / "gunicorn-access.log"),
                "--error-logfile",
                str(tmp / "gunicorn-error.log"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(_nginx_conf(tmp, nginx_port, app_port)), "-g", "daemon off;"],
            stdout=out,
            stderr=out,
        )
    try:
        _wait_for(f"http://127.0.0.1:{app_port}/health", app, tmp / "gunicorn-error.log")
        _wait_for(f"http://127.0.0.1:{nginx_port}/telemost-app/health", nginx, tmp / "nginx-error.log")
        yield {"nginx": f"http://127.0.0.1:{nginx_port}", "app": f"http://127.0.0.1:{app_port}", "tmp": tmp, "env": env}
    finally:
        _stop(nginx)
        _stop(app)


def get(url: str, **kwargs) -> requests.Response:
    """A request on a fresh connection, so that either gunicorn worker may answer it."""
    return requests.request(
        kwargs.pop("method", "GET"),
        url,
        timeout=30,
        headers={"Connection": "close", **kwargs.pop("headers", {})},
        **kwargs,
    )


def raw(base: str, method: str, target: str) -> int:
    """Send the request target byte for byte (requests would normalise %74oken to token)."""
    address = urlsplit(base)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        conn.request(method, target, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_snippet_serves_the_app_under_its_prefix(proxied):
    response = get(f"{proxied['nginx']}/telemost-app/health")
    assert response.status_code == 200 and response.json()["base_path"] == "/telemost-app"


@pytest.mark.parametrize("header", ["X-Script-Name", "X-Forwarded-Prefix"])
def test_a_clients_prefix_headers_do_not_pass_nginx(proxied, header):
    response = get(f"{proxied['nginx']}/telemost-app/health", headers={header: "/evil"})
    assert response.status_code == 200 and response.json()["base_path"] == "/telemost-app"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/telemost-app/telemost-app/metrics"),
        ("POST", "/telemost-app/telemost-app/tasks/refresh"),
        ("GET", "/telemost-app/telemost-app/health"),
    ],
)
def test_doubled_prefix_is_a_404(proxied, method, path):
    assert get(f"{proxied['nginx']}{path}", method=method).status_code == 404


def test_metrics_are_guarded_by_the_app_behind_nginx(proxied):
    # nginx lets 127.0.0.1 through to /metrics; the app's METRICS_ALLOW does not list it: the token is needed.
    assert get(f"{proxied['nginx']}/telemost-app/metrics").status_code == 401
    token = {"Authorization": f"Bearer {proxied['env']['METRICS_TOKEN']}"}
    response = get(f"{proxied['nginx']}/telemost-app/metrics", headers=token)
    assert response.status_code == 200 and "# TYPE b24_credentials gauge" in response.text


def test_secret_names_in_any_spelling_stay_out_of_both_access_logs(proxied):
    urls = [
        f"/telemost-app/api/admin/status?%74oken={SECRET}",
        f"/telemost-app/api/admin/status?t%6Fken={SECRET}",
        f"/telemost-app/auth/yandex/callback?c%6Fde={SECRET}&state=x",
        f"/telemost-app/events?auth%5Bapplication_token%5D={SECRET}",
    ]
    for url in urls:
        method = "POST" if "/events" in url else "GET"
        assert raw(proxied["nginx"], method, url) == raw(proxied["app"], method, url.removeprefix("/telemost-app"))
    time.sleep(0.5)  # gunicorn writes its access log after the response
    gunicorn_log = (proxied["tmp"] / "gunicorn-access.log").read_text()
    nginx_log = (proxied["tmp"] / "nginx-access.log").read_text()
    assert "/api/admin/status?%74oken=[REDACTED]" in gunicorn_log
    assert "GET /telemost-app/api/admin/status HTTP/1.1" in nginx_log  # the path, never the query
    for text in (gunicorn_log, nginx_log, (proxied["tmp"] / "gunicorn-error.log").read_text()):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/telemost-app/api/session", '{"member_id": "\\ud800", "access_token": "a", "domain": "a.bitrix24.ru"}'),
        ("/telemost-app/events", '{"event": "ONAPPUPDATE", "auth": {"application_token": "\\ud800"}}'),
        ("/telemost-app/api/session", "[" * 200000),
    ],
)
def test_bad_bodies_are_400_without_a_traceback(proxied, path, body):
    response = get(
        f"{proxied['nginx']}{path}", method="POST", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert "Traceback" not in (proxied["tmp"] / "gunicorn-error.log").read_text()


def test_wrong_cron_tokens_are_throttled_across_workers(proxied):
    # A forged X-Forwarded-For does not help: nginx appends the real address, which the app reads.
    statuses = [
        get(
            f"{proxied['nginx']}/telemost-app/tasks/refresh",
            method="POST",
            headers={"X-Cron-Token": f"guess-{i}", "X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(ATTEMPTS)
    ]
    assert statuses == [401] * ATTEMPTS
    refused = get(
        f"{proxied['nginx']}/telemost-app/tasks/refresh",
        method="POST",
        headers={"X-Cron-Token": proxied["env"]["CRON_TOKEN"]},
    )
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 300
    db = Database(make_url("", proxied["env"]["DATABASE_PATH"]), pool_size=1)
    try:
        with db.read() as conn:
            rows = conn.execute(
                sa.select(auth_failures.c.scope, auth_failures.c.client, auth_failures.c.failures).where(
                    auth_failures.c.scope == "cron"
                )
            ).all()
    finally:
        db.dispose()
    assert [tuple(r) for r in rows] == [("cron", "127.0.0.1", ATTEMPTS)]
