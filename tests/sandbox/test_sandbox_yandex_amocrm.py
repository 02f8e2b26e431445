"""Fake Yandex OAuth / login info and fake amoCRM OAuth."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_yandex_code_flow_refresh_and_info(api: Any, creds: dict[str, str]) -> None:
    base = api.base
    authorize = api.http.get(
        f"{base}/yandex-oauth/authorize",
        allow_redirects=False,
        params={
            "response_type": "code",
            "client_id": creds["YANDEX_CLIENT_ID"],
            "redirect_uri": "http://127.0.0.1:9/yandex/callback",
            "state": "s1",
        },
    )
    assert authorize.status_code == 302
    query = _query(authorize.headers["Location"])
    assert query["state"] == "s1" and len(query["code"]) == 7 and query["code"].isdigit()

    basic = (
        "Basic " + base64.b64encode(f"{creds['YANDEX_CLIENT_ID']}:{creds['YANDEX_CLIENT_SECRET']}".encode()).decode()
    )
    token = api.http.post(
        f"{base}/yandex-oauth/token",
        headers={"Authorization": basic},
        data={"grant_type": "authorization_code", "code": query["code"], "client_secret": "wrong"},
    )
    assert token.status_code == 200, token.text  # the header wins over body credentials
    pair = token.json()
    assert list(pair)[:4] == ["token_type", "access_token", "expires_in", "refresh_token"]
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 31536000
    reused = api.http.post(
        f"{base}/yandex-oauth/token",
        headers={"Authorization": basic},
        data={"grant_type": "authorization_code", "code": query["code"]},
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    info = api.http.get(
        f"{base}/yandex-login/info",
        params={"format": "json"},
        headers={"Authorization": f"OAuth {pair['access_token']}"},
    ).json()
    assert {"id", "login", "default_email", "display_name", "real_name"} <= set(info)

    body_creds = {"client_id": creds["YANDEX_CLIENT_ID"], "client_secret": creds["YANDEX_CLIENT_SECRET"]}
    refreshed = api.http.post(
        f"{base}/yandex-oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"], **body_creds},
    )
    assert refreshed.status_code == 200 and "scope" not in refreshed.json()
    again = api.http.post(
        f"{base}/yandex-oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"], **body_creds},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert set(again.json()) == {"error", "error_description"}
    assert api.control("GET", "oauth/refreshes").json()["yandex"]["reuse_attempts"] == 1

    def post(**data: str) -> Any:
        return api.http.post(f"{base}/yandex-oauth/token", data=data).json()["error"]

    assert post(grant_type="refresh_token", refresh_token="x", client_id="nope", client_secret="x") == "invalid_client"
    assert post(grant_type="password", **body_creds) == "unsupported_grant_type"
    assert post(grant_type="refresh_token", **body_creds) == "invalid_request"
    assert post(grant_type="authorization_code", code="12ab", **body_creds) == "bad_verification_code"
    unauthorized = api.http.get(f"{base}/yandex-login/info", headers={"Authorization": "OAuth nope"})
    assert unauthorized.status_code == 401
    bad_client = api.http.get(
        f"{base}/yandex-oauth/authorize",
        allow_redirects=False,
        params={"response_type": "code", "client_id": "nope", "redirect_uri": "http://x/"},
    )
    assert bad_client.status_code == 400


def test_amocrm_code_flow_refresh_and_errors(api: Any, creds: dict[str, str]) -> None:
    base = api.base
    api.control("POST", "amocrm/accounts", json={"subdomain": "second"})
    consent = api.http.get(
        f"{base}/amocrm/oauth",
        allow_redirects=False,
        params={
            "client_id": creds["AMOCRM_CLIENT_ID"],
            "state": "st",
            "mode": "post_message",
            "subdomain": "second",
        },
    )
    assert consent.status_code == 302
    location = consent.headers["Location"]
    assert location.startswith(creds["AMOCRM_REDIRECT_URI"] + "?")
    query = _query(location)
    assert query["referer"] == "second.amocrm.ru" and query["state"] == "st"
    url = f"{base}/amocrm/second/oauth2/access_token"
    request = {
        "client_id": creds["AMOCRM_CLIENT_ID"],
        "client_secret": creds["AMOCRM_CLIENT_SECRET"],
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": creds["AMOCRM_REDIRECT_URI"],
    }
    wrong_account = api.http.post(f"{base}/amocrm/sandboxcrm/oauth2/access_token", json=request)
    assert wrong_account.status_code == 400 and wrong_account.json()["hint"] == "Invalid account"
    issued = api.http.post(url, json=request)
    assert issued.status_code == 200
    pair = issued.json()
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 86400 and "server_time" in pair
    assert pair["refresh_token"].startswith("def50200")
    revoked_code = api.http.post(url, json=request)
    assert revoked_code.json()["hint"] == "Authorization code has been revoked"

    account = api.http.get(
        f"{base}/amocrm/second/api/v4/account", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert account.status_code == 200 and account.json()["subdomain"] == "second"
    assert api.http.get(f"{base}/amocrm/second/api/v4/account").status_code == 401

    refresh = {**request, "grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    refresh.pop("code")
    rotated = api.http.post(url, data=refresh)  # form bodies are accepted too
    assert rotated.status_code == 200 and rotated.json()["refresh_token"] != pair["refresh_token"]
    spent = api.http.post(url, json=refresh)
    assert spent.status_code == 401
    assert spent.json() == {
        "hint": "Token has been revoked",
        "title": "Некорректный запрос",
        "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
        "status": 401,
        "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
    }
    garbage = api.http.post(url, json={**refresh, "refresh_token": "def50200garbage"})
    assert garbage.status_code == 400 and garbage.json()["hint"] == "Invalid refresh token"
    hints = {
        "Check the `client_id` parameter": {**refresh, "client_id": "nope"},
        "Check the `client_secret` parameter": {**refresh, "client_secret": "nope"},
        "Redirect URI is not associated with client": {**refresh, "redirect_uri": "http://elsewhere/"},
    }
    for hint, body in hints.items():
        answer = api.http.post(url, json=body)
        assert answer.status_code == 400 and answer.json()["hint"] == hint
    unknown = api.http.post(f"{base}/amocrm/nosuch/oauth2/access_token", json=refresh)
    assert unknown.json()["hint"] == "Invalid account"
    expired_code = api.http.post(url, json={**request, "code": "def50200nonsense"})
    assert expired_code.json()["hint"] == "Cannot decrypt the authorization code"
