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


def test_x_script_name_wins_over_nothing(client):
    body = client.get("/proxy/health", headers={"X-Script-Name": "/proxy"}).get_json()
    assert body["base_path"] == "/proxy"
    # A header that is not a plain path is ignored rather than trusted.
    assert client.get("/health", headers={"X-Script-Name": "/x?y"}).get_json()["base_path"] == "/"


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
    over = client.post("/tasks/refresh", json={"budget_s": config.get("REFRESH_BUDGET_SECONDS", 240) + 1},
                       headers=headers)
    assert over.status_code == 400 and over.get_json()["error"] == "bad_request"
    assert client.post("/tasks/refresh", json={"budget_s": 5}, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("allow_loopback", "protocol", "expected"),
    [(False, "0", "https://acme.bitrix24.ru"), (False, "1", "https://acme.bitrix24.ru"),
     (True, "0", "http://acme.bitrix24.ru"), (True, "1", "https://acme.bitrix24.ru")],
)
def test_verified_origin_ignores_protocol_outside_the_sandbox(allow_loopback, protocol, expected):
    from types import SimpleNamespace

    from routes.frame import verified_origin

    portals = SimpleNamespace(settings=SimpleNamespace(allow_loopback=allow_loopback))
    portal = SimpleNamespace(domain="acme.bitrix24.ru")
    assert verified_origin(portal, {"PROTOCOL": protocol, "DOMAIN": "evil.example.com"}, portals) == expected


@pytest.mark.parametrize(
    ("referer", "expected"),
    [("acme.amocrm.ru", "acme"), ("ACME.amocrm.ru", "acme"), ("acme.kommo.com", ""), ("evil.com", ""),
     ("a.b.amocrm.ru", ""), ("", "")],
)
def test_amocrm_subdomain_from_referer(services, referer, expected):
    assert services.integrations.amocrm_subdomain(referer) == expected


@pytest.mark.parametrize("body", [{"subdomain": "acme", "access_token": 5, "expires_in": 60},
                                  {"subdomain": ["acme"], "code": "x"}, {"subdomain": "acme", "code": "x",
                                                                         "expires_in": True}])
def test_amocrm_register_rejects_non_string_fields(client, config, body):
    response = client.post("/api/admin/amocrm/accounts", json=body, headers={"X-API-Token": config["ADMIN_API_TOKEN"]})
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
