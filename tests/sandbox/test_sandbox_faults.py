"""Injected faults: latency, error statuses, hung connections, responses lost after a rotation."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests


def _amo_refresh_body(creds: dict[str, str], refresh_token: str) -> dict[str, str]:
    return {
        "client_id": creds["AMOCRM_CLIENT_ID"],
        "client_secret": creds["AMOCRM_CLIENT_SECRET"],
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "redirect_uri": creds["AMOCRM_REDIRECT_URI"],
    }


def test_latency_and_count(api: Any) -> None:
    token = api.mint()["access_token"]
    fault = api.control("POST", "faults", json={"server": "portal", "mode": "latency", "value": 0.3, "count": 1})
    assert fault.status_code == 201
    started = time.monotonic()
    assert api.call("profile", token).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert api.control("GET", "faults").json() == []  # count exhausted
    started = time.monotonic()
    api.call("profile", token)
    assert time.monotonic() - started < 0.3


def test_status_faults_have_provider_shapes(api: Any) -> None:
    token = api.mint()
    api.control("POST", "faults", json={"server": "portal", "mode": "5xx", "value": 502, "count": 1})
    failed = api.call("profile", token["access_token"])
    assert failed.status_code == 502 and failed.json()["error"] == "INTERNAL_SERVER_ERROR"

    api.control("POST", "faults", json={"server": "oauth", "mode": "503", "count": 1})
    busy = api.refresh(token["refresh_token"])
    assert busy.status_code == 503 and busy.json()["error"] == "QUERY_LIMIT_EXCEEDED"
    assert api.refresh(token["refresh_token"]).status_code == 200  # not rotated by the 503

    api.control("POST", "faults", json={"server": "amocrm", "mode": "429", "count": 1})
    amo = api.http.post(f"{api.base}/amocrm/sandboxcrm/oauth2/access_token", json={})
    assert amo.status_code == 429 and amo.json()["status"] == 429 and "title" in amo.json()

    api.control("POST", "faults", json={"server": "yandex", "mode": "5xx", "count": 1})
    ya = api.http.post(f"{api.base}/yandex-oauth/token", data={})
    assert ya.status_code == 500 and "error" in ya.json()

    # Faults never touch the control API, and "all" matches every provider server.
    api.control("POST", "faults", json={"server": "all", "mode": "503"})
    assert api.control("GET", "health").status_code == 200
    assert api.call("profile", token["access_token"]).status_code == 503
    assert api.http.get(f"{api.base}/yandex-login/info").status_code == 503
    assert api.control("DELETE", "faults").json() == {"cleared": 1}
    assert api.control("POST", "faults", json={"server": "moon", "mode": "503"}).status_code == 400


def test_stacked_faults_apply_in_order(api: Any) -> None:
    token = api.mint()["access_token"]
    api.control("POST", "faults", json={"server": "portal", "mode": "latency", "value": 0.2, "count": 1})
    api.control("POST", "faults", json={"server": "portal", "mode": "5xx", "count": 1})
    started = time.monotonic()
    response = api.call("profile", token)
    assert response.status_code == 500 and time.monotonic() - started >= 0.2
    assert api.call("profile", token).status_code == 200


def test_timeout_closes_without_answer(api: Any) -> None:
    token = api.mint()["access_token"]
    api.control("POST", "faults", json={"server": "portal", "mode": "timeout", "value": 0.3, "count": 1})
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        api.call("profile", token)
    assert time.monotonic() - started >= 0.3
    api.control("POST", "faults", json={"server": "portal", "mode": "timeout", "value": 2, "count": 1})
    with pytest.raises(requests.ReadTimeout):
        api.http.get(api.rest_url(0) + "profile", params={"auth": token}, timeout=0.3)


def test_drop_after_rotate_bitrix(api: Any) -> None:
    token = api.mint()
    api.control("POST", "faults", json={"server": "oauth", "mode": "drop_after_rotate", "count": 1})
    with pytest.raises(requests.ConnectionError):
        api.refresh(token["refresh_token"])
    grant = api.control("GET", f"oauth/grants/{token['grant_id']}").json()
    assert grant["rotations"] == 1 and grant["refresh_token"] != token["refresh_token"]
    assert api.refresh(token["refresh_token"]).json()["error"] == "invalid_grant"  # the lost pair won
    counters = api.control("GET", "oauth/refreshes").json()["bitrix24"]
    assert counters["total"] == 1 and counters["reuse_attempts"] == 1
    assert api.refresh(grant["refresh_token"]).status_code == 200


def test_drop_after_rotate_yandex_and_amocrm(api: Any, creds: dict[str, str]) -> None:
    ya = api.mint(provider="yandex")
    api.control("POST", "faults", json={"server": "yandex", "mode": "drop_after_rotate", "count": 1})
    with pytest.raises(requests.ConnectionError):
        api.http.post(
            f"{api.base}/yandex-oauth/token",
            auth=(creds["YANDEX_CLIENT_ID"], creds["YANDEX_CLIENT_SECRET"]),
            data={"grant_type": "refresh_token", "refresh_token": ya["refresh_token"]},
        )
    assert api.control("GET", f"oauth/grants/{ya['grant_id']}").json()["rotations"] == 1

    amo = api.mint(provider="amocrm")
    api.control("POST", "faults", json={"server": "amocrm", "mode": "drop_after_rotate", "count": 1})
    url = f"{api.base}/amocrm/sandboxcrm/oauth2/access_token"
    with pytest.raises(requests.ConnectionError):
        api.http.post(url, json=_amo_refresh_body(creds, amo["refresh_token"]))
    spent = api.http.post(url, json=_amo_refresh_body(creds, amo["refresh_token"]))
    assert spent.status_code == 401 and spent.json()["hint"] == "Token has been revoked"
    assert api.control("GET", "oauth/refreshes").json()["amocrm"]["reuse_attempts"] == 1
