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
