"""App-level behaviour: prefixes, error shapes, headers."""

import pytest

from app import create_app
from tests.conftest import make_config


@pytest.fixture
def prefixed(tmp_path):
    application = create_app(make_config(tmp_path, BASE_PATH="/telemost-app"))
    yield application.test_client()
    application.extensions["db"].dispose()


def test_base_path_prefix(prefixed):
    body = prefixed.get("/telemost-app/health").get_json()
    assert body == {"status": "healthy", "service": "b24-telemost", "base_path": "/telemost-app"}
    assert prefixed.get("/telemost-app/health/ready").get_json()["status"] == "ready"


def test_x_script_name_sets_the_script_root_without_touching_the_path(client):
    # The proxy has already removed its prefix: the path arrives bare and the prefix is only SCRIPT_NAME.
    body = client.get("/health", headers={"X-Script-Name": "/proxy"}).get_json()
    assert body["base_path"] == "/proxy"
    # A header that is not a plain path is ignored rather than trusted.
    assert client.get("/health", headers={"X-Script-Name": "/x?y"}).get_json()["base_path"] == "/"


# What nginx-integration.conf forwards for /telemost-app/telemost-app/<x>: its `location /telemost-app/`
# strips one prefix, so the app sees /telemost-app/<x> and the prefix header. Another client, not nginx.
NGINX_ATTACKER = {"REMOTE_ADDR": "127.0.0.1"}
NGINX_HEADERS = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "apps.example.com"}


@pytest.mark.parametrize("base_path", ["", "/telemost-app"])
@pytest.mark.parametrize("prefix_header", ["X-Forwarded-Prefix", "X-Script-Name"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/telemost-app/metrics"), ("post", "/telemost-app/tasks/refresh"), ("get", "/telemost-app/health")],
)
def test_doubled_prefix_is_not_stripped_again(make_client, base_path, prefix_header, method, path):
    client = make_client(BASE_PATH=base_path)
    headers = {**NGINX_HEADERS, prefix_header: "/telemost-app"}
    response = getattr(client, method)(path, headers=headers, environ_base=NGINX_ATTACKER)
    assert response.status_code == 404


def test_the_proxied_prefix_serves_the_bare_path(make_client):
    client = make_client(BASE_PATH="/telemost-app")
    headers = {**NGINX_HEADERS, "X-Forwarded-Prefix": "/telemost-app"}
    response = client.get("/health", headers=headers, environ_base=NGINX_ATTACKER)
    assert response.status_code == 200 and response.get_json()["base_path"] == "/telemost-app"


@pytest.mark.parametrize("prefix_header", ["X-Forwarded-Prefix", "X-Script-Name"])
def test_prefix_headers_are_ignored_without_a_trusted_proxy(make_client, prefix_header):
    client = make_client(TRUSTED_PROXIES=0)
    assert client.get("/health", headers={prefix_header: "/evil"}).get_json()["base_path"] == "/"
    # Nor is the path stripped by it: /evil/health is no alias of /health.
    assert client.get("/evil/health", headers={prefix_header: "/evil"}).status_code == 404


def test_forwarded_prefix_takes_the_value_of_the_trusted_hop(make_client):
    client = make_client(TRUSTED_PROXIES=1)
    # A client-supplied value comes first; our nginx appends (or sets) its own, the last one.
    body = client.get("/health", headers={"X-Forwarded-Prefix": "/evil, /telemost-app"}).get_json()
    assert body["base_path"] == "/telemost-app"


def test_forwarded_for_is_ignored_without_a_trusted_proxy(make_client, config):
    # With TRUSTED_PROXIES=0 a client cannot pretend to be 127.0.0.1 to read /metrics.
    client = make_client(TRUSTED_PROXIES=0)
    response = client.get(
        "/metrics", headers={"X-Forwarded-For": "127.0.0.1"}, environ_base={"REMOTE_ADDR": "203.0.113.7"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("path", "status", "base_path"),
    [
        ("/telemost-app/health", 200, "/telemost-app"),
        ("/health", 200, "/telemost-app"),  # cron and health checks on 127.0.0.1 skip the prefix
        ("/telemost-app/telemost-app/health", 404, None),
        ("/telemost-appx/health", 404, None),
    ],
)
def test_base_path_strips_exactly_once_without_a_proxy(make_client, path, status, base_path):
    client = make_client(BASE_PATH="/telemost-app", TRUSTED_PROXIES=0)
    response = client.get(path)
    assert response.status_code == status
    if base_path is not None:
        assert response.get_json()["base_path"] == base_path


def test_non_utf8_query_string_is_a_page_not_a_500(app):
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path="/", method="GET").get_environ()
    environ["QUERY_STRING"] = "DOMAIN=\xed\xa0\x80&lang=en"  # raw bytes as a WSGI server hands them over
    body, status, headers = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert status == "401 UNAUTHORIZED" and headers["Content-Type"].startswith("text/html")
    assert b'lang="en"' in b"".join(body)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/api/session", {"data": "{oops", "content_type": "application/json"}, 400),
        ("post", "/api/session", {"json": [1, 2]}, 400),
        ("post", "/tasks/refresh", {}, 401),
        ("get", "/api/current-user", {}, 401),
        ("get", "/api/admin/status", {}, 401),
        ("delete", "/health", {}, 405),
        ("get", "/api/nope", {}, 404),
    ],
)
def test_errors_are_json_with_code_and_message(client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert set(response.get_json()) == {"error", "message"}


def test_html_404_outside_the_api(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]


def test_malformed_event_form_is_400(client):
    response = client.post("/events", data={"auth": "x", "auth[member_id]": "y", "event": "ONAPPUNINSTALL"})
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"


def test_refresh_budget_over_http_is_capped_by_config(client, config):
    headers = {"X-Cron-Token": config["CRON_TOKEN"]}
    over = client.post(
        "/tasks/refresh", json={"budget_s": config.get("REFRESH_BUDGET_SECONDS", 240) + 1}, headers=headers
    )
    assert over.status_code == 400 and over.get_json()["error"] == "bad_request"
    assert client.post("/tasks/refresh", json={"budget_s": 5}, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("allow_loopback", "protocol", "expected"),
    [
        (False, "0", "https://acme.bitrix24.ru"),
        (False, "1", "https://acme.bitrix24.ru"),
        (True, "0", "http://acme.bitrix24.ru"),
        (True, "1", "https://acme.bitrix24.ru"),
    ],
)
def test_verified_origin_ignores_protocol_outside_the_sandbox(allow_loopback, protocol, expected):
    from types import SimpleNamespace

    from routes.frame import verified_origin

    portals = SimpleNamespace(settings=SimpleNamespace(allow_loopback=allow_loopback))
    portal = SimpleNamespace(domain="acme.bitrix24.ru")
    assert verified_origin(portal, {"PROTOCOL": protocol, "DOMAIN": "evil.example.com"}, portals) == expected


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        ("acme.amocrm.ru", "acme"),
        ("ACME.amocrm.ru", "acme"),
        ("acme.kommo.com", ""),
        ("evil.com", ""),
        ("a.b.amocrm.ru", ""),
        ("", ""),
    ],
)
def test_amocrm_subdomain_from_referer(services, referer, expected):
    assert services.integrations.amocrm_subdomain(referer) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"subdomain": "acme", "access_token": 5, "expires_in": 60},
        {"subdomain": ["acme"], "code": "x"},
        {"subdomain": "acme", "code": "x", "expires_in": True},
    ],
)
def test_amocrm_register_rejects_non_string_fields(client, config, body):
    response = client.post("/api/admin/amocrm/accounts", json=body, headers={"X-API-Token": config["ADMIN_API_TOKEN"]})
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
