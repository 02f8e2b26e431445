"""Fake Bitrix24 OAuth server: rotation, reuse detection, counters, errors, app.info, code flow."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The provided authorization grant is invalid, expired, revoked",
}


def test_refresh_rotates_and_reuse_is_invalid_grant(api: Any, example: Any) -> None:
    token = api.mint()
    first = api.refresh(token["refresh_token"])
    assert first.status_code == 200
    body = first.json()
    assert set(body) == set(example("oauth-refresh-response.json"))
    assert body["refresh_token"] != token["refresh_token"]
    assert body["access_token"] != token["access_token"]
    assert body["domain"] == urlsplit(api.base).netloc  # the OAuth host, not the portal
    assert body["client_endpoint"] == api.rest_url(0)
    assert body["server_endpoint"] == f"{api.base}/rest/"
    assert body["member_id"] == token["member_id"]
    assert body["user_id"] == 1 and body["status"] == "L" and body["expires_in"] == 3600
    assert body["scope"] == "calendar,crm,im,imbot,imopenlines,placement,user"

    reuse = api.refresh(token["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json() == INVALID_GRANT

    second = api.http.post(
        f"{api.base}/oauth/token/",
        data={
            "grant_type": "refresh_token",
            "client_id": api.creds["BITRIX24_CLIENT_ID"],
            "client_secret": api.creds["BITRIX24_CLIENT_SECRET"],
            "refresh_token": body["refresh_token"],
        },
    )
    assert second.status_code == 200  # POST with a form body works as well as GET + query

    counters = api.control("GET", "oauth/refreshes").json()["bitrix24"]
    grant_id = token["grant_id"]
    assert counters["total"] == 2 and counters["by_grant"] == {grant_id: 2}
    assert counters["reuse_attempts"] == 1 and counters["reuse_by_grant"] == {grant_id: 1}
    assert counters["spent_tokens"] == 2

    grant = api.control("GET", f"oauth/grants/{grant_id}").json()
    assert grant["rotations"] == 2 and grant["revoked"] is False
    assert grant["refresh_token"] == second.json()["refresh_token"]
    assert grant["access_token"] == second.json()["access_token"]

    assert api.control("DELETE", "oauth/refreshes").json()["bitrix24"]["total"] == 0


def test_old_access_token_after_refresh_is_configurable(api: Any) -> None:
    token = api.mint()
    assert api.refresh(token["refresh_token"]).status_code == 200
    assert api.call("user.current", token["access_token"]).json()["error"] == "invalid_token"

    api.control("POST", "config", json={"bitrix_old_access_valid_after_refresh": True})
    other = api.mint()
    assert api.refresh(other["refresh_token"]).status_code == 200
    assert api.call("user.current", other["access_token"]).status_code == 200


def test_oauth_errors(api: Any) -> None:
    token = api.mint()
    bad = api.refresh(token["refresh_token"], client_secret="nope")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    missing = api.http.get(
        f"{api.base}/oauth/token/",
        params={
            "grant_type": "refresh_token",
            "client_id": api.creds["BITRIX24_CLIENT_ID"],
            "client_secret": api.creds["BITRIX24_CLIENT_SECRET"],
        },
    )
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    unknown = api.refresh("0" * 32)
    assert unknown.status_code == 400 and unknown.json() == INVALID_GRANT
    # A never-spent unknown token is not a reuse attempt.
    assert api.control("GET", "oauth/refreshes").json()["bitrix24"]["reuse_attempts"] == 0

    api.control("POST", "config", json={"bitrix_refresh_ttl": 0})
    expired = api.mint()
    assert api.refresh(expired["refresh_token"]).json() == INVALID_GRANT


def test_payment_required_and_not_installed(api: Any) -> None:
    token = api.mint()
    api.control("POST", "portals/portal1/payment", json={"required": True})
    unpaid = api.refresh(token["refresh_token"])
    assert unpaid.status_code == 401 and unpaid.json()["error"] == "PAYMENT_REQUIRED"
    assert api.call("user.current", token["access_token"]).json()["error"] == "PAYMENT_REQUIRED"
    api.control("POST", "config", json={"payment_required_status": 402})
    assert api.refresh(token["refresh_token"]).status_code == 402
    api.control("POST", "portals/portal1/payment", json={"required": False})

    api.control("POST", "portals/portal1/install", json={"mode": "event"})
    api.control("POST", "portals/portal1/uninstall", json={"clean": True})
    gone = api.refresh(token["refresh_token"])
    assert gone.status_code == 401 and gone.json()["error"] == "NOT_INSTALLED"


def test_revoke_grant(api: Any) -> None:
    token = api.mint()
    revoked = api.control("POST", f"oauth/grants/{token['grant_id']}/revoke").json()
    assert revoked["revoked"] is True
    assert api.refresh(token["refresh_token"]).json() == INVALID_GRANT
    assert api.call("user.current", token["access_token"]).json()["error"] == "invalid_token"


def test_app_info_own_and_foreign_tokens(api: Any) -> None:
    own = api.mint()
    answer = api.http.get(f"{api.base}/rest/app.info", params={"auth": own["access_token"]})
    assert answer.status_code == 200
    result = answer.json()["result"]
    assert result["client_id"] == api.creds["BITRIX24_CLIENT_ID"] and result["user_id"] == 1
    assert result["expires"] == own["expires"]
    install = result["install"]
    assert install["member_id"] == own["member_id"] and install["domain"] == own["domain"]
    assert install["client_endpoint"] == api.rest_url(0)
    assert {"installed", "version", "status", "scope", "uri", "member_type"} <= set(install)

    foreign = api.mint(client_id="local.someone.else", portal="portal2", user_id=3)
    other = api.http.post(f"{api.base}/rest/app.info.json", data={"auth": foreign["access_token"]}).json()
    assert other["result"]["client_id"] == "local.someone.else"
    assert other["result"]["install"]["member_id"] == api.box.info["portals"][1]["member_id"]
    assert other["result"]["user_id"] == 3

    unknown = api.http.get(f"{api.base}/rest/app.info", params={"auth": "f" * 32})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_token"
    stale = api.mint(expires_in=0)
    expired = api.http.get(f"{api.base}/rest/app.info", params={"auth": stale["access_token"]})
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"


def test_authorization_code_flow(api: Any, example: Any) -> None:
    api.control("POST", "portals/portal1/install", json={"mode": "event"})
    portal = api.box.info["portals"][0]
    redirect = api.http.get(
        f"{portal['base']}/oauth/authorize/",
        allow_redirects=False,
        params={
            "client_id": api.creds["BITRIX24_CLIENT_ID"],
            "state": "xyz",
            "user_id": 2,
            "redirect_uri": "http://127.0.0.1:9/cb",
        },
    )
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path == "/cb" and query["state"] == "xyz" and query["domain"] == portal["domain"]
    assert query["member_id"] == portal["member_id"] and query["server_domain"] == urlsplit(api.base).netloc
    params = {
        "grant_type": "authorization_code",
        "client_id": api.creds["BITRIX24_CLIENT_ID"],
        "client_secret": api.creds["BITRIX24_CLIENT_SECRET"],
        "code": query["code"],
    }
    exchanged = api.http.get(f"{api.base}/oauth/token/", params=params)
    assert exchanged.status_code == 200
    assert set(exchanged.json()) == set(example("oauth-authorization-code-response.json"))
    me = api.call("user.current", exchanged.json()["access_token"]).json()["result"]
    assert me["ID"] == "2" and me["NAME"] == "Мария"
    again = api.http.get(f"{api.base}/oauth/token/", params=params)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_mint_many_is_fast(api: Any) -> None:
    started = time.monotonic()
    response = api.control("POST", "oauth/tokens", json={"provider": "bitrix24", "count": 10000})
    assert response.status_code == 200
    tokens = response.json()["tokens"]
    assert len(tokens) == 10000 and len({t["refresh_token"] for t in tokens}) == 10000
    assert time.monotonic() - started < 5


def test_concurrent_refreshes_spend_the_token_once(api: Any) -> None:
    token = api.mint()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: _refresh_status(api, token["refresh_token"]), range(8)))
    assert sorted(statuses) == [200] + [400] * 7
    counters = api.control("GET", "oauth/refreshes").json()["bitrix24"]
    assert counters["total"] == 1 and counters["reuse_attempts"] == 7


def _refresh_status(api: Any, refresh_token: str) -> int:
    with requests.get(
        f"{api.base}/oauth/token/",
        timeout=10,
        params={
            "grant_type": "refresh_token",
            "client_id": api.creds["BITRIX24_CLIENT_ID"],
            "client_secret": api.creds["BITRIX24_CLIENT_SECRET"],
            "refresh_token": refresh_token,
        },
    ) as response:
        return response.status_code
