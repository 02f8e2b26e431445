"""CORS only on the token API that customers' other services call from a browser, never with credentials."""

from __future__ import annotations

import pytest

from app import create_app
from config import ConfigError
from tests.conftest import make_config

ALLOWED = "https://crm.example.ru"
FOREIGN = "https://evil.example"


def preflight(client, path: str, origin: str):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Token",
        },
    )


@pytest.mark.parametrize("path", ["/api/admin/status", "/api/dialogs"])
def test_preflight_from_an_allowed_origin_names_it(edge_app, path):
    app, _ = edge_app
    response = preflight(app.test_client(), path, ALLOWED)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "x-api-token" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_preflight_from_a_foreign_origin_gets_no_allowance(edge_app):
    app, _ = edge_app
    response = preflight(app.test_client(), "/api/admin/status", FOREIGN)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_simple_requests_from_allowed_and_foreign_origins(edge_app):
    app, headers = edge_app
    client = app.test_client()
    allowed = client.get("/api/admin/status", headers={**headers["admin"], "Origin": ALLOWED})
    foreign = client.get("/api/admin/status", headers={**headers["admin"], "Origin": FOREIGN})
    assert (allowed.status_code, foreign.status_code) == (200, 200)
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert allowed.headers["Cache-Control"] == "no-store"  # never cached, so no Vary: Origin is needed
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    assert "Access-Control-Allow-Origin" not in foreign.headers


@pytest.mark.parametrize("path", ["/api/conferences", "/api/session", "/health"])
def test_the_iframe_api_and_the_rest_send_no_cors_headers(edge_app, path):
    app, headers = edge_app
    response = app.test_client().get(path, headers={**headers["bearer"], "Origin": ALLOWED})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_cors_headers_when_no_origin_is_configured(client):
    response = client.get("/api/admin/status", headers={"Origin": ALLOWED})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_wildcard_origin_is_refused_at_start_up(tmp_path):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        create_app(make_config(tmp_path, CORS_ORIGINS="https://a.example, *"))
