"""The iframe page: no Bitrix24 tokens in its URL, and no http:// portal among its frame ancestors in production."""

import pytest

from app import create_app
from tests.conftest import make_config

SECRET = "f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5"


@pytest.mark.parametrize("name", ["AUTH_ID", "REFRESH_ID", "APPLICATION_TOKEN"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_tokens_in_the_query_string_are_refused(client, services, name, method):
    query = {"DOMAIN": "acme.bitrix24.ru", "PROTOCOL": "1", "lang": "en", name: SECRET}
    response = getattr(client, method)("/", query_string=query, data={"member_id": "m1"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "sign-in data must not be sent in the page address" in page
    assert SECRET not in page
    assert "frame-ancestors 'self' https://acme.bitrix24.ru" in response.headers["Content-Security-Policy"]
    assert services.portals.counts() == {}


def test_the_refusal_speaks_russian_by_default(client):
    response = client.get("/", query_string={"AUTH_ID": SECRET})
    assert response.status_code == 400
    assert "данные входа нельзя передавать в адресе страницы" in response.get_data(as_text=True)


def test_tokens_in_the_body_are_not_refused(client):
    # What Bitrix24 really sends: auth in the POST body, only DOMAIN/PROTOCOL/LANG/APP_SID in the query.
    response = client.post(
        "/",
        query_string={"DOMAIN": "acme.bitrix24.ru", "PROTOCOL": "1"},
        data={"AUTH_ID": SECRET, "member_id": "unknown"},
    )
    assert response.status_code == 401  # not installed: verified as usual, not refused up front


@pytest.fixture
def production_client(tmp_path):
    """The app with APP_ENV=production (and its schema created, which production leaves to deploys)."""
    application = create_app(
        make_config(tmp_path, APP_ENV="production", ALLOW_LOOPBACK_PORTALS=False, AUTO_MIGRATE=True)
    )
    yield application.test_client()
    application.extensions["db"].dispose()


@pytest.mark.parametrize(("path", "status"), [("/", 401), ("/install", 400)])
def test_production_never_names_an_http_portal(production_client, path, status):
    response = production_client.post(
        path, query_string={"DOMAIN": "acme.bitrix24.ru", "PROTOCOL": "0"}, data={"LANG": "en"}
    )
    assert response.status_code == status  # not opened from Bitrix24 / missing install fields
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://acme.bitrix24.ru" in policy
    assert "http://" not in policy
