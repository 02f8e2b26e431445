"""The shipped nginx snippet for real: Debian's nginx on a free loopback port with nginx-integration.conf (its
upstream, checkout and log directory replaced, nothing else), gunicorn behind it with the production settings,
and the sandbox portal reaching the app only through nginx under /telemost-bitrix/.

Also the attacks of issue 7 findings 3, 8, 9 and 11 as a client would make them: a doubled path prefix,
percent-encoded secret names in URLs, bodies that crashed the parser, wrong tokens spread over both workers.
One module-scoped stack; skipped when nginx is not installed (scripts/install_test_deps.sh installs it).
"""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from app import MAX_BODY_BYTES
from database import Database, auth_failures, conferences, dialogs, make_url, portals
from scripts.stack import ROOT
from tests.integration.helpers import boot_data, mint, portal_info
from tests.nginx.conftest import ATTEMPTS, CHECKOUT, LOG_DIR, METRICS_TOKEN, PREFIX, UPSTREAM, snippet_for, wait_until

SECRET = "q7w8e9r0t1y2u3i4o5p6a7s8d9f0g1h2"

pytestmark = pytest.mark.slow


def get(url: str, **kwargs) -> requests.Response:
    """A request on a fresh connection, so that either gunicorn worker may answer it."""
    return requests.request(
        kwargs.pop("method", "GET"),
        url,
        timeout=30,
        headers={"Connection": "close", **kwargs.pop("headers", {})},
        **kwargs,
    )


def raw(base: str, method: str, target: str, body: bytes | None = None, headers: dict | None = None) -> int:
    """Send the request target byte for byte (requests would normalise %74oken to token)."""
    address = urlsplit(base)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def rows(edge, table, *where) -> list[dict]:
    """Rows of the app's database, read the way an operator would."""
    db = Database(make_url("", str(edge["tmp"] / "app.db")), pool_size=1)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where))]
    finally:
        db.dispose()


def log(edge, name: str) -> str:
    path = edge["tmp"] / name
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def gunicorn_lines(edge, needle: str) -> list[str]:
    """gunicorn's access-log lines that contain `needle`."""
    return [line for line in log(edge, "gunicorn-access.log").splitlines() if needle in line]


@pytest.fixture(scope="module")
def installed(edge):
    """portal1 installed by its genuine ONAPPINSTALL, posted by the sandbox portal to nginx."""
    stack = edge["stack"]
    result = stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result["body"]
    return portal_info(stack)


@pytest.fixture(scope="module")
def opened(edge, installed):
    """An employee opens the app: the portal's iframe POST to nginx; returns the response."""
    stack = edge["stack"]
    tokens = mint(stack, user_id=1)
    query = {"DOMAIN": tokens["domain"], "PROTOCOL": "0", "LANG": "ru", "APP_SID": "sid123"}
    body = {
        "AUTH_ID": tokens["access_token"],
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": tokens["server_endpoint"],
        "APPLICATION_TOKEN": installed["application_token"],
        "member_id": tokens["member_id"],
        "status": "L",
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": "{}",
    }
    return requests.post(f"{edge['public']}/", params=query, data=body, timeout=30)


def test_the_test_changes_only_the_host_specific_values_of_the_snippet(tmp_path):
    shipped = (ROOT / "nginx-integration.conf").read_text()
    used = snippet_for(8123, tmp_path)
    restored = used.replace("127.0.0.1:8123", UPSTREAM).replace(f"{ROOT}/", CHECKOUT).replace(f"{tmp_path}/", LOG_DIR)
    assert restored == shipped
    assert "location /telemost-bitrix/ {" in shipped and "/telemost-app" not in shipped


def test_health_through_nginx_under_the_prefix(edge):
    response = get(f"{edge['public']}/health")
    assert response.status_code == 200
    assert response.json()["base_path"] == PREFIX
    # nginx replaces the app's copies: exactly one of each header.
    assert response.raw.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert response.raw.headers.getlist("Referrer-Policy") == ["no-referrer"]


def test_install_through_nginx_records_the_portal(edge, installed):
    [row] = rows(edge, portals)
    assert (row["member_id"], row["domain"], row["status"]) == (
        installed["member_id"],
        installed["domain"],
        "installed",
    )
    assert gunicorn_lines(edge, '"POST /install ')
    assert f"POST {PREFIX}/install HTTP/1.1" in log(edge, "telemost-bitrix.access.log")


def test_the_iframe_page_names_the_verified_portal_and_its_assets_come_from_nginx(edge, installed, opened):
    assert opened.status_code == 200
    csp = opened.headers["Content-Security-Policy"]
    assert re.search(r"frame-ancestors 'self' http://" + re.escape(installed["domain"]) + r"(;|$)", csp)
    assert "X-Frame-Options" not in opened.headers
    assets = re.findall(rf'(?:src|href)="({PREFIX}/static/[^"]+)"', opened.text)
    assert assets, "the page links no asset under the prefix"
    for asset in assets:
        response = get(f"{edge['nginx']}{asset}")
        assert response.status_code == 200 and response.content
        # nginx's `expires 1d`: the app sends no such header for its static files.
        assert response.headers["Cache-Control"] == "max-age=86400"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Served from disk by nginx: no gunicorn worker saw them.
    assert gunicorn_lines(edge, "/static/") == []


def test_the_conference_api_through_nginx(edge, installed, opened):
    stack = edge["stack"]
    connected = stack.connect_yandex(installed["member_id"])
    assert connected.returncode == 0, connected.stderr
    bearer = {"Authorization": f"Bearer {boot_data(opened.text)['token']}"}
    created = get(
        f"{edge['public']}/api/conferences",
        method="POST",
        json={"name": "Планёрка", "start_date": "2030-03-20", "start_time": "10:00", "timezone": "Europe/Moscow"},
        headers=bearer,
    )
    assert created.status_code == 201, created.text
    listed = get(f"{edge['public']}/api/conferences", headers=bearer)
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()["items"]] == ["Планёрка"]
    [row] = rows(edge, conferences)
    assert (row["name"], row["status"]) == ("Планёрка", "scheduled")


def test_the_bot_webhook_through_nginx(edge, installed):
    stack = edge["stack"]
    attached = get(
        f"{edge['public']}/api/admin/bot/attach",
        method="POST",
        params={"portal": installed["member_id"]},
        json={"line_id": "1"},
        headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]},
    )
    assert attached.status_code == 200, attached.text
    state = stack.control("GET", "/_sandbox/portals/portal1/state", expect=200)
    # The bot's handlers name the public address: Bitrix24 posts its events through nginx.
    assert {e["handler"] for e in state["events"] if "python_bot" in e["handler"]} == {f"{edge['public']}/python_bot/"}
    message = stack.control(
        "POST",
        "/_sandbox/portals/portal1/openlines/message",
        {"line_id": 1, "client": {"id": "42", "name": "Клиент 42"}, "text": "Где мой заказ?", "connector": "livechat"},
        expect=200,
    )
    assert message["deliveries"] == [200, 200]
    [dialog] = wait_until(
        lambda: rows(edge, dialogs, dialogs.c.status == "transferred", dialogs.c.first_message.is_not(None)),
        what="the dialog stored and transferred",
    )
    assert (dialog["chat_id"], dialog["first_message"]) == (message["chat_id"], "Где мой заказ?")
    handoffs = [
        a
        for a in stack.control("GET", "/_sandbox/portals/portal1/state", expect=200)["openlines"]
        if a["action"] in ("operator", "transfer")
    ]
    assert [int(a["chat_id"]) for a in handoffs] == [message["chat_id"]]
    assert f"POST {PREFIX}/python_bot/ HTTP/1.1" in log(edge, "telemost-bitrix.access.log")


def test_a_body_over_10_mb_stops_at_nginx(edge):
    before = len(gunicorn_lines(edge, "/api/session"))
    status = raw(
        edge["nginx"],
        "POST",
        f"{PREFIX}/api/session",
        body=b"x" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json"},
    )
    assert status == 413
    # nginx logs the refusal once the client has gone (it reads and drops the rest of the body first).
    wait_until(
        lambda: f'POST {PREFIX}/api/session HTTP/1.1" 413' in log(edge, "telemost-bitrix.access.log"),
        what="nginx's log line of the 413",
    )
    assert len(gunicorn_lines(edge, "/api/session")) == before


def test_a_body_of_exactly_10_mb_reaches_the_app(edge):
    body = b'{"pad": "' + b"x" * (MAX_BODY_BYTES - 11) + b'"}'
    response = get(
        f"{edge['public']}/api/session", method="POST", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{PREFIX}{PREFIX}/metrics"),
        ("POST", f"{PREFIX}{PREFIX}/tasks/refresh"),
        ("GET", f"{PREFIX}{PREFIX}/health"),
    ],
)
def test_doubled_prefix_is_a_404(edge, method, path):
    assert get(f"{edge['nginx']}{path}", method=method).status_code == 404


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", f"{PREFIX}/metrics"),
        ("GET", f"{PREFIX}//metrics"),
        ("GET", f"{PREFIX}/%6Detrics"),
        ("GET", f"{PREFIX}/./metrics?x=1"),
        ("POST", f"{PREFIX}/tasks/refresh"),
        ("POST", f"{PREFIX}/tasks/process-events"),
        ("POST", f"{PREFIX}/%74asks/refresh"),
        ("POST", f"{PREFIX}/api/../tasks/refresh"),
        ("POST", f"{PREFIX}/tasks%2Frefresh"),
        ("GET", f"{PREFIX}%2Fmetrics"),
    ],
)
def test_metrics_and_tasks_are_not_served_through_nginx(edge, method, target):
    token = {"Authorization": f"Bearer {METRICS_TOKEN}", "X-Cron-Token": edge["stack"].env["CRON_TOKEN"]}
    before = log(edge, "gunicorn-access.log").splitlines()
    assert raw(edge["nginx"], method, target, headers=token) == 404
    # A request that does reach gunicorn, then: its line is the only new one.
    marker = f"/health?after={len(before)}"
    assert raw(edge["nginx"], "GET", f"{PREFIX}{marker}") == 200
    wait_until(lambda: gunicorn_lines(edge, marker), what="gunicorn's log line of the marker")
    new = log(edge, "gunicorn-access.log").splitlines()[len(before) :]
    assert len(new) == 1 and marker in new[0]


def test_nginx_s_own_answers_carry_the_security_headers(edge):
    refused = get(f"{edge['public']}/metrics")
    assert refused.status_code == 404 and "nginx" in refused.text  # nginx's page, not the app's JSON
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert refused.headers["Referrer-Policy"] == "no-referrer"


def test_cron_and_prometheus_reach_gunicorn_directly(edge):
    stack = edge["stack"]
    run = get(f"{edge['app']}/tasks/process-events", method="POST", headers={"X-Cron-Token": stack.env["CRON_TOKEN"]})
    assert run.status_code == 200
    # The app's own guard stays: this host is not in METRICS_ALLOW, so the token is needed.
    assert get(f"{edge['app']}/metrics").status_code == 401
    metrics = get(f"{edge['app']}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200 and "# TYPE b24_credentials gauge" in metrics.text


@pytest.mark.parametrize("header", ["X-Script-Name", "X-Forwarded-Prefix"])
def test_a_clients_prefix_headers_do_not_pass_nginx(edge, header):
    response = get(f"{edge['public']}/health", headers={header: "/evil"})
    assert response.status_code == 200 and response.json()["base_path"] == PREFIX


def test_no_token_reaches_either_access_log(edge):
    targets = [
        ("GET", f"{PREFIX}/api/admin/status?token={SECRET}", None),
        ("GET", f"{PREFIX}/api/admin/status?%74oken={SECRET}", None),
        ("GET", f"{PREFIX}/api/admin/status?t%6Fken={SECRET}", None),
        ("GET", f"{PREFIX}/auth/yandex/callback?code={SECRET}&state=x", None),
        ("GET", f"{PREFIX}/auth/yandex/callback?c%6Fde={SECRET}&state=x", None),
        ("POST", f"{PREFIX}/events?auth%5Bapplication_token%5D={SECRET}", None),
        ("POST", f"{PREFIX}/python_bot/", f"event=ONIMBOTMESSAGEADD&auth%5Bapplication_token%5D={SECRET}".encode()),
    ]
    before = len(log(edge, "gunicorn-access.log").splitlines())
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-API-Token": SECRET}
    for method, target, body in targets:
        assert raw(edge["nginx"], method, target, body=body, headers=form) < 500
    # gunicorn writes its access log after the response: wait for every line to be there.
    wait_until(
        lambda: len(log(edge, "gunicorn-access.log").splitlines()) >= before + len(targets), what="gunicorn's log"
    )
    nginx_log = log(edge, "telemost-bitrix.access.log")
    assert f"GET {PREFIX}/api/admin/status HTTP/1.1" in nginx_log  # the path, never the query
    for name in ("gunicorn-access.log", "telemost-bitrix.access.log", "app.log", "nginx-error.log"):
        assert SECRET not in log(edge, name), name


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{PREFIX}/api/session", '{"member_id": "\\ud800", "access_token": "a", "domain": "a.bitrix24.ru"}'),
        (f"{PREFIX}/events", '{"event": "ONAPPUPDATE", "auth": {"application_token": "\\ud800"}}'),
        (f"{PREFIX}/api/session", "[" * 200000),
    ],
)
def test_bad_bodies_are_400_without_a_traceback(edge, path, body):
    response = get(
        f"{edge['nginx']}{path}", method="POST", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert "Traceback" not in log(edge, "app.log")


def test_wrong_admin_tokens_are_throttled_across_workers(edge):
    db = Database(make_url("", str(edge["tmp"] / "app.db")), pool_size=1)
    try:
        with db.write() as conn:  # earlier tests sent wrong tokens from this address too
            conn.execute(sa.delete(auth_failures))
    finally:
        db.dispose()
    # A forged X-Forwarded-For does not help: nginx appends the real address, which the app reads.
    statuses = [
        get(
            f"{edge['public']}/api/admin/status",
            headers={"X-API-Token": f"guess-{i}", "X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(ATTEMPTS)
    ]
    assert statuses == [401] * ATTEMPTS
    refused = get(f"{edge['public']}/api/admin/status", headers={"X-API-Token": edge["stack"].env["ADMIN_API_TOKEN"]})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 300
    found = rows(edge, auth_failures, auth_failures.c.scope == "admin")
    assert [(r["client"], r["failures"]) for r in found] == [("127.0.0.1", ATTEMPTS)]
