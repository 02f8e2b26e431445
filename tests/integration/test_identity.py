"""Iframe identity: only a verified Bitrix24 POST gets the app and a session token."""

import threading
import time

import jwt
import pytest
import requests

from models.bitrix24 import Bitrix24Error, Bitrix24Unavailable, RestResult
from models.oauth import PERMANENT, OAuthError
from tests.factories import make_portal
from tests.integration.helpers import boot_data, credential_rows, frame_post, mint, portal_info


@pytest.fixture
def installed(live_stack):
    result = live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result
    return portal_info(live_stack)


def test_verified_open_renders_the_app_for_that_user(live_stack, installed):
    tokens = mint(live_stack, user_id=2)
    response = frame_post(live_stack, tokens, application_token=installed["application_token"])
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    csp = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' http://{installed['domain']}" in csp
    boot = boot_data(response.text)
    assert boot["user"]["name"] == "Мария Смирнова" and boot["user"]["is_admin"] is False
    claims = jwt.decode(boot["token"], options={"verify_signature": False})
    assert claims["sub"] == f"{installed['member_id']}:2"
    assert 0 < claims["exp"] - time.time() <= 900

    api = requests.get(
        f"{live_stack.app_url}/api/current-user", headers={"Authorization": f"Bearer {boot['token']}"}, timeout=10
    )
    assert api.status_code == 200
    assert api.json()["user"]["id"] == 2 and api.json()["portal"]["domain"] == installed["domain"]
    # The user's own pair is kept for later calls made on their behalf.
    assert any(c["subject"] == "user:2" for c in credential_rows(live_stack))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"APPLICATION_TOKEN": "wrong"}, "Неизвестный портал или неверный токен приложения."),
        ({"DOMAIN": "evil.example.com"}, "Домен портала не совпадает."),
        ({"member_id": "0" * 32}, "Приложение не установлено на этом портале."),
        ({"AUTH_ID": "made-up-token"}, "Токен доступа недействителен."),
        ({"DOMAIN": "10.0.0.1"}, "Адрес портала не разрешён."),
    ],
)
def test_unverifiable_open_gets_a_401_page(live_stack, installed, override, reason):
    tokens = mint(live_stack, user_id=2)
    response = frame_post(live_stack, tokens, application_token=installed["application_token"], **override)
    assert response.status_code == 401
    assert 'data-testid="error-page"' in response.text
    assert reason in response.text, "the page says why, in the portal user's language (LANG=ru)"
    assert 'id="boot"' not in response.text
    assert "Bearer" not in response.text


def test_token_of_another_app_does_not_open_the_app(live_stack, installed):
    foreign = mint(live_stack, user_id=1, client_id="local.other.app")
    response = frame_post(live_stack, foreign, application_token=installed["application_token"])
    assert response.status_code == 401 and 'id="boot"' not in response.text


def test_plain_get_is_a_readable_page(live_stack):
    response = requests.get(f"{live_stack.app_url}/", timeout=10)
    assert response.status_code == 401 and "Bitrix24" in response.text


def test_session_exchange(live_stack, installed):
    fresh = mint(live_stack, user_id=3)
    response = requests.post(
        f"{live_stack.app_url}/api/session",
        json={
            "access_token": fresh["access_token"],
            "member_id": installed["member_id"],
            "domain": installed["domain"],
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["name"] == "John Smith"
    me = requests.get(
        f"{live_stack.app_url}/api/current-user", headers={"Authorization": f"Bearer {body['token']}"}, timeout=10
    )
    assert me.json()["user"]["id"] == 3


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"access_token": "nope", "member_id": "m", "domain": "d.bitrix24.ru"}, 401, "not_installed"),
        ({"member_id": "m"}, 400, "bad_request"),
        ("not json", 400, "bad_request"),
    ],
)
def test_session_exchange_refuses_bad_input(live_stack, installed, body, status, code):
    kwargs = (
        {"json": body} if isinstance(body, dict) else {"data": body, "headers": {"Content-Type": "application/json"}}
    )
    response = requests.post(f"{live_stack.app_url}/api/session", timeout=10, **kwargs)
    assert response.status_code == status
    assert set(response.json()) == {"error", "message"} and response.json()["error"] == code


def test_api_needs_a_valid_bearer(live_stack, installed):
    url = f"{live_stack.app_url}/api/current-user"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer x.y.z"}, timeout=10).status_code == 401
    # A user id in the query string changes nothing: identity comes from the token only.
    tokens = mint(live_stack, user_id=2)
    boot = boot_data(frame_post(live_stack, tokens, application_token=installed["application_token"]).text)
    me = requests.get(url + "?user_id=1", headers={"Authorization": f"Bearer {boot['token']}"}, timeout=10)
    assert me.json()["user"]["id"] == 2


def test_uninstalled_portal_sessions_stop_working(live_stack, installed):
    tokens = mint(live_stack, user_id=2)
    boot = boot_data(frame_post(live_stack, tokens, application_token=installed["application_token"]).text)
    live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": False})
    me = requests.get(
        f"{live_stack.app_url}/api/current-user", headers={"Authorization": f"Bearer {boot['token']}"}, timeout=10
    )
    assert me.status_code == 401


def test_json_404_under_api_and_html_elsewhere(live_stack):
    api = requests.get(f"{live_stack.app_url}/api/nothing-here", timeout=10)
    assert api.status_code == 404 and set(api.json()) == {"error", "message"}
    page = requests.get(f"{live_stack.app_url}/nothing-here", timeout=10)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")


def test_health_under_a_prefix(live_stack):
    plain = requests.get(f"{live_stack.app_url}/health", timeout=10).json()
    assert plain == {"status": "healthy", "service": "b24-telemost", "base_path": "/"}
    # The proxy has stripped its prefix already: the header only sets the script root (issue 7, finding 3).
    prefixed = requests.get(
        f"{live_stack.app_url}/health/ready", headers={"X-Script-Name": "/telemost"}, timeout=10
    ).json()
    assert prefixed["status"] == "ready" and prefixed["base_path"] == "/telemost"


# ---- the open costs one round trip: app.info and the portal's batch go out together --------------------------


@pytest.fixture
def frame_portal(services):
    return make_portal(services, application_token="app-token", domain="acme.bitrix24.example")


def frame_fields(portal) -> dict:
    return {"AUTH_ID": "user-access", "member_id": portal.member_id, "APPLICATION_TOKEN": "app-token"}


def oauth_answer(services, portal) -> dict:
    return {
        "client_id": services.install.settings.client_id,
        "user_id": 2,
        "scope": "user",
        "install": {
            "member_id": portal.member_id,
            "domain": portal.domain,
            "client_endpoint": portal.client_endpoint,
            "installed": True,
        },
    }


PORTAL_ANSWER = {
    "result": {"user": {"ID": "2", "NAME": "Мария", "LAST_NAME": "Смирнова"}, "profile": {"ADMIN": False}},
    "result_error": [],
}


def test_iframe_open_asks_the_oauth_server_and_the_portal_at_once(client, services, frame_portal, monkeypatch):
    # Each side waits for the other: a sequential open would break the barrier and fail the request.
    together = threading.Barrier(2, timeout=10)
    seen: list[tuple[str, str]] = []

    def app_info(access_token):
        seen.append(("app.info", access_token))
        together.wait()
        return oauth_answer(services, frame_portal)

    def rest_call(endpoint, access_token, method, params=None):
        seen.append((method, access_token))
        together.wait()
        return RestResult(PORTAL_ANSWER)

    monkeypatch.setattr(services.install.oauth, "app_info", app_info)
    monkeypatch.setattr(services.identity.rest, "call", rest_call)

    response = client.post(f"/?DOMAIN={frame_portal.domain}&PROTOCOL=1", data=frame_fields(frame_portal))

    assert response.status_code == 200, response.text
    boot = boot_data(response.text)
    assert (boot["user"]["id"], boot["user"]["name"], boot["user"]["is_admin"]) == (2, "Мария Смирнова", False)
    assert sorted(seen) == [("app.info", "user-access"), ("batch", "user-access")]


@pytest.mark.parametrize(
    ("oauth_error", "portal_error", "status", "words"),
    [
        (OAuthError("invalid_token", PERMANENT, status=401), None, 401, "Токен доступа недействителен"),
        (
            OAuthError("invalid_token", PERMANENT, status=401),
            Bitrix24Unavailable("network_error"),
            401,
            "Токен доступа недействителен",
        ),
        (None, Bitrix24Unavailable("network_error"), 503, "Портал не ответил"),
        (None, Bitrix24Error("expired_token", "", 401), 401, "Портал отклонил токен (expired_token)"),
    ],
)
def test_iframe_open_refusals_keep_their_order(
    client, services, frame_portal, monkeypatch, oauth_error, portal_error, status, words
):
    """Both questions go out together, yet the OAuth server's refusal still wins over the portal's."""

    def app_info(access_token):
        if oauth_error:
            raise oauth_error
        return oauth_answer(services, frame_portal)

    def rest_call(endpoint, access_token, method, params=None):
        if portal_error:
            raise portal_error
        return RestResult(PORTAL_ANSWER)

    monkeypatch.setattr(services.install.oauth, "app_info", app_info)
    monkeypatch.setattr(services.identity.rest, "call", rest_call)

    response = client.post(f"/?DOMAIN={frame_portal.domain}&PROTOCOL=1&lang=ru", data=frame_fields(frame_portal))

    assert response.status_code == status
    assert words in response.text and 'id="boot"' not in response.text
