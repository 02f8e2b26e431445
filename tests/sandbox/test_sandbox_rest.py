"""Fake portal REST: auth and expiry, paging, batch, rate limit, methods, call log."""

from __future__ import annotations

import time
from typing import Any

import requests

from sandbox import start


def test_rest_auth_errors(api: Any) -> None:
    token = api.mint()
    ok = api.call("user.current.json", token["access_token"])
    assert ok.status_code == 200 and ok.json()["result"]["ID"] == "1"
    assert {"operating", "operating_reset_at", "date_start"} <= set(ok.json()["time"])
    no_auth = api.http.get(api.rest_url(0) + "user.current")
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "NO_AUTH_FOUND"
    unknown = api.call("user.current", "0" * 32)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_token"
    other_portal = api.call("user.current", token["access_token"], portal=1)
    assert other_portal.status_code == 401 and other_portal.json()["error"] == "invalid_token"
    missing = api.call("no.such.method", token["access_token"])
    assert missing.status_code == 404 and missing.json()["error"] == "ERROR_METHOD_NOT_FOUND"


def test_access_token_expiry(creds: dict[str, str], http: requests.Session, example: Any) -> None:
    box = start(port=0, app_url="http://127.0.0.1:9", portals=1, access_ttl=1, env=creds)
    try:
        minted = http.post(f"{box.base}/_sandbox/oauth/tokens", json={}).json()["tokens"][0]
        assert minted["expires_in"] == 1
        rest = box.info["portals"][0]["rest"]
        assert http.get(rest + "profile", params={"auth": minted["access_token"]}).status_code == 200
        time.sleep(1.1)
        expired = http.get(rest + "profile", params={"auth": minted["access_token"]})
        assert expired.status_code == 401
        assert expired.json() == example("rest-error-expired_token.json")
        refreshed = http.get(
            f"{box.base}/oauth/token/",
            params={
                "grant_type": "refresh_token",
                "client_id": creds["BITRIX24_CLIENT_ID"],
                "client_secret": creds["BITRIX24_CLIENT_SECRET"],
                "refresh_token": minted["refresh_token"],
            },
        ).json()
        assert refreshed["expires_in"] == 1
        assert http.get(rest + "profile", params={"auth": refreshed["access_token"]}).status_code == 200
    finally:
        box.stop()


def test_user_get_paging_and_filters(api: Any, example: Any) -> None:
    token = api.mint()["access_token"]
    first = api.call("user.get", token).json()
    assert len(first["result"]) == 50 and first["total"] == 60 and first["next"] == 50
    assert set(first["result"][0]) >= set(example("rest-user.get.json")["result"][0])
    second = api.call("user.get", token, start=50).json()
    assert len(second["result"]) == 10 and "next" not in second
    active = api.http.post(
        api.rest_url(0) + "user.get", data={"auth": token, "FILTER[ACTIVE]": "true", "start": "50"}
    ).json()
    assert active["total"] == 59 and len(active["result"]) == 9
    found = api.post("user.get", token, {"FILTER": {"NAME_SEARCH": "Мария"}}).json()
    assert [u["ID"] for u in found["result"]] == ["2"] and found["result"][0]["LAST_NAME"] == "Смирнова"
    by_id = api.http.get(
        api.rest_url(0) + "user.get",
        params={"auth": token, "FILTER[ID][]": ["3", "1"], "select[]": ["ID", "NAME"]},
    ).json()
    assert by_id["result"] == [{"ID": "1", "NAME": "Иван"}, {"ID": "3", "NAME": "John"}]
    me = api.call("user.current", token).json()["result"]
    assert set(me) == set(example("rest-user.current.json")["result"])
    profile = api.call("profile", token).json()["result"]
    assert profile["ADMIN"] is True and profile["NAME"] == "Иван" and profile["LAST_NAME"] == "Петров"
    other = api.call("profile", api.mint(user_id=2)["access_token"]).json()["result"]
    assert other["ADMIN"] is False


def test_batch_references_and_halt(api: Any, example: Any) -> None:
    token = api.mint()["access_token"]
    batch = api.post(
        "batch",
        token,
        {
            "halt": 0,
            "cmd": {
                "me": "user.current",
                "users": "user.get?FILTER[ACTIVE]=true",
                "same": "user.get?ID=$result[me][ID]",
                "third": "user.get?ID=$result[users][2][ID]",
            },
        },
    )
    assert batch.status_code == 200
    result = batch.json()["result"]
    assert set(result) == set(example("rest-batch.json")["result"])
    assert result["result"]["same"][0]["NAME"] == "Иван"
    assert result["result"]["third"][0]["ID"] == "3"
    assert result["result_total"]["users"] == 59 and result["result_next"]["users"] == 50
    assert result["result_error"] == []
    assert "operating" not in result["result_time"]["me"]

    halt0 = api.post("batch", token, {"halt": 0, "cmd": {"a": "nope.one", "b": "nope.two", "c": "profile"}})
    body0 = halt0.json()["result"]
    assert halt0.status_code == 200 and set(body0["result_error"]) == {"a", "b"}
    assert body0["result_total"] == [] and body0["result_next"] == []
    halt1 = api.http.post(
        api.rest_url(0) + "batch",
        data={"auth": token, "halt": "1", "cmd[a]": "nope.one", "cmd[b]": "nope.two"},
    ).json()["result"]
    assert halt1["result"] == [] and list(halt1["result_error"]) == ["a"]

    too_long = api.post("batch", token, {"cmd": {str(i): "profile" for i in range(51)}})
    assert too_long.status_code == 400 and too_long.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


def test_leaky_bucket(api: Any) -> None:
    token = api.mint()["access_token"]
    api.control("POST", "portals/portal1/limits", json={"bucket": 5, "drain": 0.01})
    statuses = [api.call("profile", token).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [503]
    limited = api.call("profile", token)
    assert limited.json()["error"] == "QUERY_LIMIT_EXCEEDED"
    assert api.call("profile", token, portal=1).status_code == 401  # other portal, own bucket


def test_call_log_strips_secrets(api: Any) -> None:
    token = api.mint()
    api.http.post(
        api.rest_url(0) + "im.notify.system.add",
        data={
            "auth": token["access_token"],
            "USER_ID": "2",
            "MESSAGE": "hi",
            "refresh_token": "x",
            "client_secret": "y",
        },
    )
    calls = api.control("GET", "portals/portal1/calls").json()
    assert calls[-1]["method"] == "im.notify.system.add" and calls[-1]["user_id"] == 1
    assert calls[-1]["params"] == {"USER_ID": "2", "MESSAGE": "hi"} and calls[-1]["status"] == 200
    assert token["access_token"] not in str(calls)
    assert api.control("DELETE", "portals/portal1/calls").json()["cleared"] >= 1
    assert api.control("GET", "portals/portal1/calls").json() == []


def test_events_and_placements_permissions(api: Any) -> None:
    admin = api.mint()["access_token"]
    user = api.mint(user_id=2)["access_token"]
    bind = {"event": "onAppUninstall", "handler": "http://127.0.0.1:9/events"}
    assert api.post("event.bind", admin, bind).json()["result"] is True
    duplicate = api.post("event.bind", admin, bind)
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["error_description"]
    offline = api.post("event.bind", user, {**bind, "event": "ONCRMDEALADD", "event_type": "offline"})
    assert offline.status_code == 403 and offline.json()["error"] == "ACCESS_DENIED"
    assert api.post("event.bind", user, {"event": "ONCALENDARENTRYADD", "handler": bind["handler"]}).status_code == 200
    listed = api.call("event.get", admin).json()["result"]
    assert {"event": "ONAPPUNINSTALL", "handler": bind["handler"], "auth_type": "1", "offline": 0} in listed
    assert api.post("event.unbind", admin, bind).json()["result"] == {"count": 1}

    placement = {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": "http://127.0.0.1:9/", "TITLE": "Tab"}
    assert api.post("placement.bind", user, placement).status_code == 403
    assert api.post("placement.bind", admin, placement).json()["result"] is True
    assert api.call("placement.get", admin).json()["result"][0]["placement"] == "CRM_DEAL_DETAIL_TAB"
    info = api.call("app.info", admin).json()["result"]
    assert info["CODE"] == api.creds["BITRIX24_CLIENT_ID"] and info["INSTALLED"] is False


def test_imbot_notify_openlines(api: Any, example: Any) -> None:
    token = api.mint()["access_token"]
    request = {k: v for k, v in example("rest-imbot.register-request.json").items() if k != "auth"}
    registered = api.post("imbot.register", token, request)
    assert registered.status_code == 200 and isinstance(registered.json()["result"], int)
    assert api.post("imbot.register", token, request).json()["result"] == registered.json()["result"]
    no_code = api.post("imbot.register", token, {**request, "CODE": ""})
    assert no_code.status_code == 400 and no_code.json() == example("rest-imbot.register-error.json")
    no_handler = api.post("imbot.register", token, {"CODE": "x", "PROPERTIES": {"NAME": "X"}})
    assert no_handler.json()["error"] == "EVENT_MESSAGE_ADD_ERROR"
    bot_id = registered.json()["result"]
    assert str(bot_id) in api.call("imbot.bot.list", token).json()["result"]
    sent = api.post("imbot.message.add", token, {"BOT_ID": bot_id, "DIALOG_ID": "chat5", "MESSAGE": "Hello"})
    assert isinstance(sent.json()["result"], int)

    assert api.post("im.notify.system.add", token, {"MESSAGE": "x"}).json()["error"] == "USER_ID_EMPTY"
    assert api.post("im.notify.system.add", token, {"USER_ID": 2}).json()["error"] == "MESSAGE_EMPTY"
    for text in ("first", "second"):
        api.post("im.notify.system.add", token, {"USER_ID": 2, "MESSAGE": text, "TAG": "conf-1"})
    for action in ("operator", "finish"):
        assert api.post(f"imopenlines.bot.session.{action}", token, {"CHAT_ID": 42}).json()["result"] is True
    assert api.post("imopenlines.bot.session.transfer", token, {"CHAT_ID": 42, "QUEUE_ID": 1}).json()["result"]

    state = api.control("GET", "portals/portal1/state").json()
    assert state["bots"][0]["code"] == "newbot"
    assert state["bots"][0]["handlers"]["EVENT_WELCOME_MESSAGE"] == "https://example.com/bot/events"
    assert [n["message"] for n in state["notifications"]] == ["second"]
    assert state["notifications"][0]["user_id"] == 2 and state["notifications"][0]["tag"] == "conf-1"
    assert [o["action"] for o in state["openlines"]] == ["operator", "finish", "transfer"]
    assert state["messages"][0]["dialog_id"] == "chat5"
    assert api.post("imbot.unregister", token, {"BOT_ID": bot_id}).json()["result"] is True


def test_calendar(api: Any, example: Any) -> None:
    host = api.mint(user_id=2)["access_token"]
    request = {k: v for k, v in example("rest-calendar.event.add-request.json").items() if k != "auth"}
    added = api.post("calendar.event.add", host, request)
    assert added.status_code == 200 and isinstance(added.json()["result"], int)
    event_id = added.json()["result"]
    company = {k: v for k, v in example("rest-calendar.event.add-request-company.json").items() if k != "auth"}
    assert api.post("calendar.event.add", host, company).status_code == 200
    missing = api.post("calendar.event.add", host, {k: v for k, v in request.items() if k != "name"})
    assert missing.status_code == 400 and missing.json() == example("rest-calendar.event.add-error.json")

    row = api.call("calendar.event.getbyid", host, id=event_id).json()["result"]
    assert row["MEETING_HOST"] == "2" and row["IS_MEETING"] is True
    assert [a["id"] for a in row["ATTENDEE_LIST"]] == [2, 1, 3]
    timed = api.post(
        "calendar.event.add",
        host,
        {
            "type": "user",
            "ownerId": 2,
            "name": "Call",
            "from": "2025-03-20T15:00:00+02:00",
            "to": "2025-03-20T16:00:00+02:00",
        },
    ).json()["result"]
    timed_row = api.call("calendar.event.getbyid", host, id=timed).json()["result"]
    assert timed_row["DATE_FROM_TS_UTC"] == "1742475600"
    assert (
        api.post("calendar.event.update", host, {"id": timed, "type": "user", "ownerId": 2, "name": "Renamed"}).json()[
            "result"
        ]
        == timed
    )
    listed = api.call("calendar.event.get", api.mint(user_id=1)["access_token"], type="user", ownerId=1).json()
    assert [r["ID"] for r in listed["result"]] == [str(event_id)]  # user 1 attends the meeting only
    assert api.post("calendar.event.delete", host, {"id": timed}).json()["result"] is True
    gone = api.call("calendar.event.getbyid", host, id=timed)
    assert gone.status_code == 400 and gone.json()["error"] == ""


def test_rest_allows_cross_origin_calls(api: Any) -> None:
    preflight = api.http.options(
        api.rest_url(0) + "user.current",
        headers={
            "Origin": "http://127.0.0.1:9",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-request-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type,x-request-id"
    answer = api.post("profile", api.mint()["access_token"], {})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
