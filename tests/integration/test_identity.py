"""Iframe identity: only a verified Bitrix24 POST gets the app and a session token."""

import time

import jwt
import pytest
import requests

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

    api = requests.get(f"{live_stack.app_url}/api/current-user",
                       headers={"Authorization": f"Bearer {boot['token']}"}, timeout=10)
    assert api.status_code == 200
    assert api.json()["user"]["id"] == 2 and api.json()["portal"]["domain"] == installed["domain"]
    # The user's own pair is kept for later calls made on their behalf.
    assert any(c["subject"] == "user:2" for c in credential_rows(live_stack))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"APPLICATION_TOKEN": "wrong"}, "application token"),
        ({"DOMAIN": "evil.example.com"}, "domain"),
        ({"member_id": "0" * 32}, "not installed"),
        ({"AUTH_ID": "made-up-token"}, "not valid"),
        ({"DOMAIN": "10.0.0.1"}, "host"),
    ],
)
def test_unverifiable_open_gets_a_401_page(live_stack, installed, override, reason):
    tokens = mint(live_stack, user_id=2)
    response = frame_post(live_stack, tokens, application_token=installed["application_token"], **override)
    assert response.status_code in (400, 401)
    assert 'data-testid="error-page"' in response.text
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
    response = requests.post(f"{live_stack.app_url}/api/session", json={
        "access_token": fresh["access_token"], "member_id": installed["member_id"], "domain": installed["domain"]},
        timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["name"] == "John Smith"
    me = requests.get(f"{live_stack.app_url}/api/current-user",
                      headers={"Authorization": f"Bearer {body['token']}"}, timeout=10)
    assert me.json()["user"]["id"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "nope", "member_id": "m", "domain": "d.bitrix24.ru"},
        {"member_id": "m"},
        "not json",
    ],
)
def test_session_exchange_refuses_bad_input(live_stack, installed, body):
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body,
                                                             "headers": {"Content-Type": "application/json"}}
    response = requests.post(f"{live_stack.app_url}/api/session", timeout=10, **kwargs)
    assert response.status_code in (400, 401)
    assert set(response.json()) == {"error", "message"}


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
    me = requests.get(f"{live_stack.app_url}/api/current-user",
                      headers={"Authorization": f"Bearer {boot['token']}"}, timeout=10)
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
    prefixed = requests.get(f"{live_stack.app_url}/health/ready", headers={"X-Script-Name": "/telemost"},
                            timeout=10).json()
    assert prefixed["status"] == "ready" and prefixed["base_path"] == "/telemost"
