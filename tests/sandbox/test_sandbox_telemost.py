"""Fake Telemost API: shapes, cohosts, knobs, errors, rate limit, faults, control listing."""

from __future__ import annotations

import re
from typing import Any

import pytest


def _token(api: Any, login: str | None = None) -> str:
    body = {"provider": "yandex", **({"login": login} if login else {})}
    return api.mint(**body)["access_token"]


def _tm(api: Any) -> str:
    return api.box.info["telemost"]


def _req(api: Any, verb: str, path: str, token: str, **kwargs: Any):
    headers = {"Authorization": f"OAuth {token}", "X-Request-ID": "req-1"}
    return api.http.request(verb, f"{_tm(api)}{path}", headers=headers, timeout=10, **kwargs)


def _config(api: Any, **knobs: Any) -> None:
    response = api.control("POST", "config", json=knobs)
    assert response.status_code == 200, response.text


def _listing(api: Any) -> list[dict[str, Any]]:
    response = api.control("GET", "telemost/conferences")
    assert response.status_code == 200
    return response.json()


def test_info_names_the_base_url(api: Any) -> None:
    assert api.box.info["telemost"] == f"{api.base}/telemost-api"


def test_create_answers_201_with_id_and_join_url_only(api: Any, example: Any) -> None:
    token = _token(api)
    payload = example("telemost-conference-create-request-openapi-public.json")
    response = _req(api, "POST", "/conferences", token, json=payload)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "join_url"}
    assert re.fullmatch(r"\d{10,14}", body["id"])
    assert body["join_url"] == f"https://telemost.yandex.ru/j/{body['id']}"
    assert response.headers["Yandex-Cloud-Request-ID"]
    held = _listing(api)
    assert held == [
        {
            "id": body["id"],
            "join_url": body["join_url"],
            "owner": "sandbox.user@yandex.ru",
            "cohosts": [],
            "live_stream": None,
            "waiting_room_level": "PUBLIC",
            "deleted": False,
        }
    ]
    log = api.control("GET", "telemost/requests").json()
    assert log[-1]["x_request_id"] == "req-1" and log[-1]["authorization_scheme"] == "OAuth"


def test_broadcast_gets_a_watch_url_and_get_returns_the_full_object(api: Any, example: Any) -> None:
    token = _token(api)
    payload = example("telemost-conference-create-request-openapi-restricted.json")
    payload["cohosts"] = [{"email": "admin1@yandex.ru"}, {"email": "ivan.petrov.1@sandbox.example"}]
    created = _req(api, "POST", "/conferences", token, json=payload)
    assert created.status_code == 201
    watch = created.json()["live_stream"]["watch_url"]
    assert re.fullmatch(r"https://telemost\.yandex\.ru/live/[0-9a-f]{32}", watch)
    assert set(created.json()) == {"id", "join_url", "live_stream"}
    got = _req(api, "GET", f"/conferences/{created.json()['id']}", token)
    assert got.status_code == 200
    body = got.json()
    assert body["waiting_room_level"] == "ORGANIZATION"
    assert body["live_stream"] == {
        "watch_url": watch,
        "access_level": "PUBLIC",
        "title": payload["live_stream"]["title"],
        "description": payload["live_stream"]["description"],
    }
    assert body["sip_uri_telemost"] == "j@sip.t.ya.ru"
    assert _listing(api)[0]["cohosts"] == ["admin1@yandex.ru", "ivan.petrov.1@sandbox.example"]


def test_patch_changes_only_sent_fields(api: Any) -> None:
    token = _token(api)
    cid = _req(api, "POST", "/conferences", token, json={"waiting_room_level": "PUBLIC"}).json()["id"]
    patched = _req(api, "PATCH", f"/conferences/{cid}", token, json={"waiting_room_level": "ADMINS"})
    assert patched.status_code == 200
    assert patched.json()["waiting_room_level"] == "ADMINS"
    assert "live_stream" not in patched.json()
    added = _req(api, "PATCH", f"/conferences/{cid}", token, json={"live_stream": {"title": "T"}})
    assert added.json()["live_stream"]["title"] == "T" and added.json()["waiting_room_level"] == "ADMINS"


def test_cohost_endpoints(api: Any) -> None:
    token = _token(api)
    cid = _req(api, "POST", "/conferences", token, json={}).json()["id"]
    path = f"/conferences/{cid}/cohosts"
    put = _req(api, "PUT", path, token, json={"cohosts": [{"email": "a@x.ru"}, {"email": "b@x.ru"}]})
    assert put.status_code == 204 and put.content == b""
    add = _req(api, "PATCH", path, token, json={"cohosts": [{"email": "c@x.ru"}, {"email": "a@x.ru"}]})
    assert add.status_code == 204
    assert _req(api, "GET", path, token).json() == {"cohosts": [{"email": e} for e in ("a@x.ru", "b@x.ru", "c@x.ru")]}
    assert _req(api, "GET", path, token, params={"offset": 1, "limit": 1}).json() == {"cohosts": [{"email": "b@x.ru"}]}
    removed = _req(api, "DELETE", path, token, params={"cohost_emails": "a@x.ru,c@x.ru"})
    assert removed.status_code == 204
    assert _listing(api)[0]["cohosts"] == ["b@x.ru"]
    cleared = _req(api, "PUT", path, token, json={"cohosts": []})
    assert cleared.status_code == 204 and _listing(api)[0]["cohosts"] == []
    assert _req(api, "GET", path, token, params={"limit": 257}).status_code == 400


def test_unknown_cohosts_are_named(api: Any) -> None:
    token = _token(api)
    response = _req(
        api,
        "POST",
        "/conferences",
        token,
        json={"cohosts": [{"email": "ok@yandex.ru"}, {"email": "x@unknown.example"}, {"email": "y@unknown.example"}]},
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": "NoSuchUserPrincipalsFound",
        "description": "No such user principals found",
        "message": "Пользователи не найдены.",
        "details": {"emails": "x@unknown.example;y@unknown.example"},
    }
    assert _listing(api) == []


def test_more_than_30_cohosts_is_a_bad_request(api: Any) -> None:
    token = _token(api)
    response = _req(api, "POST", "/conferences", token, json={"cohosts": [{"email": f"u{i}@x.ru"} for i in range(31)]})
    assert response.status_code == 400
    assert set(response.json()) == {"error", "description", "message", "details"}


def test_not_found_and_other_accounts_conferences(api: Any) -> None:
    owner, other = _token(api), _token(api, "someone.else")
    cid = _req(api, "POST", "/conferences", owner, json={}).json()["id"]
    for token, target in ((owner, "999999999999"), (other, cid)):
        response = _req(api, "GET", f"/conferences/{target}", token)
        assert response.status_code == 404
        assert response.json()["error"] == "ConferenceNotFound"


@pytest.mark.parametrize("header", [None, "Bearer {t}", "OAuth nonsense"])
def test_authorization_must_be_an_issued_oauth_token(api: Any, header: str | None) -> None:
    token = _token(api)
    headers = {"Authorization": header.format(t=token)} if header else {}
    response = api.http.post(f"{_tm(api)}/conferences", json={}, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "UnauthorizedError"


def test_personal_accounts_restricted_by_knob(api: Any) -> None:
    personal, org = _token(api), _token(api, "ivan@corp.example")
    _config(api, telemost_personal_restricted=True)
    refused = _req(api, "POST", "/conferences", personal, json={})
    assert refused.status_code == 403
    assert refused.json()["error"] == "ApiRestrictedToOrganizations"
    created = _req(api, "POST", "/conferences", org, json={})
    assert created.status_code == 201
    assert _listing(api)[0]["owner"] == "ivan@corp.example"


def test_live_stream_payment_knob(api: Any) -> None:
    token = _token(api)
    _config(api, telemost_live_stream_paid=True)
    response = _req(api, "POST", "/conferences", token, json={"live_stream": {"title": "x"}})
    assert response.status_code == 402
    assert response.json()["error"] == "PaymentRequiredToUseLiveStreams"
    assert _req(api, "POST", "/conferences", token, json={}).status_code == 201


def test_forbidden_knob(api: Any) -> None:
    token = _token(api)
    _config(api, telemost_forbidden=True)
    response = _req(api, "POST", "/conferences", token, json={})
    assert response.status_code == 403
    assert response.json()["error"] == "ForbiddenError"


@pytest.mark.parametrize(("mode", "status", "deleted"), [("405", 405, False), ("404", 404, False), ("204", 204, True)])
def test_delete_per_knob(api: Any, mode: str, status: int, deleted: bool) -> None:
    token = _token(api)
    cid = _req(api, "POST", "/conferences", token, json={}).json()["id"]
    _config(api, telemost_delete=mode)
    response = _req(api, "DELETE", f"/conferences/{cid}", token)
    assert response.status_code == status
    assert _listing(api)[0]["deleted"] is deleted
    assert _req(api, "GET", f"/conferences/{cid}", token).status_code == (404 if deleted else 200)


def test_rate_limit(api: Any) -> None:
    token = _token(api)
    _config(api, telemost_rate_burst=3, telemost_rate_per_second=0.001)
    statuses = [_req(api, "POST", "/conferences", token, json={}).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = _req(api, "GET", "/conferences/1", token)
    assert limited.json()["error"] == "TooManyRequests" and limited.headers["Retry-After"] == "1"


def test_fault_target_telemost(api: Any) -> None:
    token = _token(api)
    fault = api.control("POST", "faults", json={"server": "telemost", "mode": "5xx", "value": 503, "count": 1})
    assert fault.status_code == 201
    failed = _req(api, "POST", "/conferences", token, json={})
    assert failed.status_code == 503
    assert set(failed.json()) == {"error", "description", "message", "details"}
    assert _req(api, "POST", "/conferences", token, json={}).status_code == 201
    assert len(_listing(api)) == 1


def test_control_can_forget_every_conference(api: Any) -> None:
    token = _token(api)
    _req(api, "POST", "/conferences", token, json={})
    cleared = api.control("DELETE", "telemost/conferences")
    assert cleared.json() == {"cleared": 1}
    assert _listing(api) == []
