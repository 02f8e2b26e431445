"""Install / installFinish / update / uninstall, events sent to the app, the portal page and frame helpers."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

FRAME_BODY_KEYS = [
    "AUTH_ID",
    "AUTH_EXPIRES",
    "REFRESH_ID",
    "SERVER_ENDPOINT",
    "APPLICATION_TOKEN",
    "APPLICATION_SCOPE",
    "member_id",
    "status",
    "PLACEMENT",
    "PLACEMENT_OPTIONS",
]


def _frame_config(html: str) -> dict[str, Any]:
    match = re.search(r"window\.SANDBOX_FRAME = (.*?);</script>", html, re.S)
    assert match, html
    return json.loads(match.group(1))


def test_event_mode_install_posts_onappinstall(api: Any, receiver: Any, example: Any) -> None:
    answer = api.control("POST", "portals/portal1/install", json={"mode": "event"}).json()
    assert answer["status"] == 200 and answer["body"] == "ok"
    assert answer["portal"]["installed"] and answer["portal"]["install_finished"]
    [posted] = receiver.take()
    assert posted["method"] == "POST" and posted["path"] == "/install"
    assert posted["content_type"] == "application/x-www-form-urlencoded"
    form = dict(posted["form"])
    assert list(form) == list(example("event-ONAPPINSTALL.json"))
    portal = api.box.info["portals"][0]
    assert form["event"] == "ONAPPINSTALL" and form["auth[domain]"] == portal["domain"]
    assert form["auth[client_endpoint]"] == portal["rest"] and form["auth[member_id]"] == portal["member_id"]
    assert form["auth[server_endpoint]"] == f"{api.base}/rest/"
    assert form["auth[application_token]"] == answer["portal"]["application_token"]
    assert form["auth[expires_in]"] == "3600" and form["auth[status]"] == "L"
    me = api.call("user.current", form["auth[access_token]"]).json()["result"]
    assert me["ID"] == "1"
    details = api.control("GET", "portals/portal1").json()
    assert details["application_token"] == form["auth[application_token]"]


def test_installer_mode_page_and_install_finish(api: Any, receiver: Any) -> None:
    answer = api.control("POST", "portals/portal1/install", json={"mode": "installer"}).json()
    assert answer["status"] == 200 and answer["portal"]["install_finished"] is False
    [posted] = receiver.take()
    portal = api.box.info["portals"][0]
    assert posted["path"] == "/install"
    args = dict(posted["args"])
    assert args["DOMAIN"] == portal["domain"] and args["PROTOCOL"] == "0" and args["LANG"] == "ru"
    assert len(args["APP_SID"]) == 32
    form = dict(posted["form"])
    assert list(form) == FRAME_BODY_KEYS
    assert form["PLACEMENT"] == "DEFAULT" and form["PLACEMENT_OPTIONS"] == "{}"
    assert form["SERVER_ENDPOINT"] == f"{api.base}/rest/" and form["member_id"] == portal["member_id"]
    assert form["APPLICATION_TOKEN"] == answer["portal"]["application_token"]

    page_base = portal["base"]
    waiting = api.http.get(f"{page_base}/app/", params={"user_id": 2}).text
    assert "The application is not fully installed yet. Please contact your administrator." in waiting
    assert 'id="app-frame"' not in waiting
    installer = api.http.get(f"{page_base}/app/", params={"user_id": 1}).text
    frame = _frame_config(installer)
    assert frame["initData"]["INSTALL"] is True and frame["initData"]["IS_ADMIN"] is True
    assert f'action="{receiver.url}/install?DOMAIN=' in installer
    assert f'name="{frame["frameName"]}"' in installer and 'id="app-frame"' in installer
    assert '<script src="/_frame/static/b24parent.js"></script>' in installer

    denied = api.http.post(f"{page_base}/_frame/install-finish", params={"user_id": 2})
    assert denied.status_code == 403
    assert api.http.post(f"{page_base}{frame['installFinishUrl']}").json() == {"ok": True}
    assert api.control("GET", "portals/portal1").json()["install_finished"] is True

    first = api.http.get(f"{page_base}/app/", params={"user_id": 2}).text
    config = _frame_config(first)
    assert config["initData"]["INSTALL"] is False and config["initData"]["FIRST_RUN"] is True
    assert config["initData"]["IS_ADMIN"] is False and config["user"] == {"id": 2, "name": "Мария Смирнова"}
    assert config["appOrigin"] == receiver.url and config["iframeId"] == "app-frame"
    assert config["initData"]["DOMAIN"] == portal["domain"] and config["initData"]["PATH"] == "/rest/"
    assert config["refreshAuthUrl"] == "/_frame/refresh-auth?user_id=2"
    assert len(config["users"]) == 59 and {"id", "name", "position"} == set(config["users"][0])
    name_domain, protocol, sid = config["frameName"].split("|")
    assert name_domain == portal["domain"] and protocol == "0" and len(sid) == 32
    action = re.search(r'action="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert urlsplit(action).path == "/" and parse_qs(urlsplit(action).query)["APP_SID"] == [sid]
    again = _frame_config(api.http.get(f"{page_base}/app/", params={"user_id": 2}).text)
    assert again["initData"]["FIRST_RUN"] is False
    assert again["initData"]["AUTH_ID"] != config["initData"]["AUTH_ID"]  # fresh tokens per opening


def test_page_when_not_installed_and_open_redirect(api: Any) -> None:
    portal = api.box.info["portals"][1]
    page = api.http.get(f"{portal['base']}/app/", params={"user_id": 1}).text
    assert "not installed" in page and 'id="app-frame"' not in page
    opened = api.control("GET", "portals/portal2/open", params={"user_id": 3}, allow_redirects=False)
    assert opened.status_code == 302 and opened.headers["Location"] == f"{portal['base']}/app/?user_id=3"


def test_frame_helpers(api: Any) -> None:
    api.control("POST", "portals/portal1/install", json={"mode": "event"})
    base = api.box.info["portals"][0]["base"]
    fresh = api.http.post(f"{base}/_frame/refresh-auth", params={"user_id": 3}).json()
    assert set(fresh) == {"AUTH_ID", "REFRESH_ID", "AUTH_EXPIRES", "member_id", "DOMAIN"}
    assert api.call("user.current", fresh["AUTH_ID"]).json()["result"]["NAME"] == "John"
    recorded = api.http.post(
        f"{base}/_frame/event",
        params={"user_id": 3},
        json={"command": "resizeWindow", "params": {"width": "100%", "height": 500}},
    )
    assert recorded.json() == {"ok": True}
    state = api.control("GET", "portals/portal1/state").json()
    assert state["frame_events"][0]["command"] == "resizeWindow"
    assert state["frame_events"][0]["params"]["height"] == 500
    assert api.http.get(f"{base}/_frame/static/.gitkeep").status_code == 200


def test_update_goes_to_bound_handler_after_finish(api: Any, receiver: Any) -> None:
    api.control("POST", "portals/portal1/install", json={"mode": "installer"})
    receiver.take()
    admin = api.mint()["access_token"]
    bound = {"event": "ONAPPUPDATE", "handler": f"{receiver.url}/events/update"}
    assert api.post("event.bind", admin, bound).json()["result"] is True
    before = api.control("POST", "portals/portal1/update", json={"version": "2"}).json()
    assert [r["path"] for r in receiver.take()] == ["/install"]  # not finished: bound handlers get nothing
    assert before["portal"]["version"] == "2"

    api.control("POST", "portals/portal1/install-finish")
    token_before = api.control("GET", "portals/portal1").json()["application_token"]
    answer = api.control("POST", "portals/portal1/update", json={"version": "3"}).json()
    [posted] = receiver.take()
    form = dict(posted["form"])
    assert posted["path"] == "/events/update" and form["event"] == "ONAPPUPDATE"
    assert form["event_handler_id"].isdigit()
    assert form["data[VERSION]"] == "3" and form["data[PREVIOUS_VERSION]"] == "2"
    assert form["auth[application_token]"] == answer["portal"]["application_token"] != token_before
    assert api.call("app.info", form["auth[access_token]"]).json()["result"]["VERSION"] == 3


def test_uninstall_revokes_and_notifies(api: Any, receiver: Any, example: Any) -> None:
    api.control("POST", "portals/portal1/install", json={"mode": "event"})
    receiver.take()
    admin = api.mint()["access_token"]
    api.post("event.bind", admin, {"event": "ONAPPUNINSTALL", "handler": f"{receiver.url}/events"})
    api.post(
        "imbot.register",
        admin,
        {"CODE": "b", "EVENT_HANDLER": f"{receiver.url}/bot", "PROPERTIES": {"NAME": "B"}},
    )
    answer = api.control("POST", "portals/portal1/uninstall", json={"clean": True}).json()
    assert answer["status"] == 200 and answer["revoked"] >= 2
    [posted] = receiver.take()
    form = dict(posted["form"])
    expected = list(example("event-ONAPPUNINSTALL.json"))
    assert [k for k in form if k != "event_handler_id"] == expected
    assert form["data[CLEAN]"] == "1" and "auth[access_token]" not in form
    assert api.call("profile", admin).json()["error"] == "invalid_token"
    state = api.control("GET", "portals/portal1/state").json()
    assert state["bots"] == [] and state["events"] == [] and state["portal"]["installed"] is False

    api.control("POST", "portals/portal2/install", json={"mode": "event"})
    receiver.take()
    api.control("POST", "portals/portal2/uninstall", json={"clean": False})
    [fallback] = receiver.take()
    assert fallback["path"] == "/events" and dict(fallback["form"])["data[CLEAN]"] == "0"


def test_custom_events_and_bot_events(api: Any, receiver: Any) -> None:
    api.control("POST", "portals/portal1/install", json={"mode": "event"})
    receiver.take()
    admin = api.mint()["access_token"]
    bot_id = api.post(
        "imbot.register",
        admin,
        {
            "CODE": "olbot",
            "TYPE": "O",
            "EVENT_MESSAGE_ADD": f"{receiver.url}/bot/message",
            "EVENT_WELCOME_MESSAGE": f"{receiver.url}/bot/join",
            "EVENT_BOT_DELETE": f"{receiver.url}/bot/delete",
            "PROPERTIES": {"NAME": "Бот"},
        },
    ).json()["result"]
    sent = api.control(
        "POST",
        "portals/portal1/events",
        json={
            "event": "ONIMBOTJOINCHAT",
            "fields": {"PARAMS": {"CHAT_ID": 7, "DIALOG_ID": "chat7", "CHAT_ENTITY_TYPE": "LINES"}},
        },
    ).json()
    assert sent["status"] == 200
    [posted] = receiver.take()
    form = dict(posted["form"])
    assert posted["path"] == "/bot/join" and form["event"] == "ONIMBOTJOINCHAT"
    assert form["data[PARAMS][CHAT_ID]"] == "7" and form["data[PARAMS][CHAT_ENTITY_TYPE]"] == "LINES"
    assert form[f"data[BOT][{bot_id}][BOT_CODE]"] == "olbot"
    assert form[f"data[BOT][{bot_id}][AUTH][user_id]"] == str(bot_id)
    assert form["auth[application_token]"] == api.control("GET", "portals/portal1").json()["application_token"]
    reply = api.post(
        "imbot.message.add",
        form[f"data[BOT][{bot_id}][access_token]"],
        {"DIALOG_ID": "chat7", "MESSAGE": "Здравствуйте"},
    )
    assert reply.status_code == 200

    api.post("event.bind", admin, {"event": "ONCALENDARENTRYADD", "handler": f"{receiver.url}/cal", "auth_type": 0})
    api.control(
        "POST",
        "portals/portal1/events",
        json={"event": "OnCalendarEntryAdd", "fields": {"id": 5}, "user_id": 3},
    )
    [calendar] = receiver.take()
    form = dict(calendar["form"])
    assert form["data[id]"] == "5" and form["auth[user_id]"] == "3" and "auth[refresh_token]" in form
    missing = api.control("POST", "portals/portal1/events", json={"event": "ONCRMDEALADD"})
    assert missing.status_code == 404


def test_create_portal(api: Any) -> None:
    created = api.control("POST", "portals", json={"name": "acme"})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "acme" and body["rest"] == f"{body['base']}/rest/"
    assert (
        body["users"][0] == {"id": 1, "name": "Иван Петров", "admin": True, "active": True} and len(body["users"]) == 60
    )
    assert api.control("POST", "portals", json={"name": "acme"}).status_code == 409
    assert len(api.control("GET", "portals").json()) == 3
    token = api.mint(portal="acme")
    assert token["domain"] == body["domain"]
    assert api.http.get(body["rest"] + "profile", params={"auth": token["access_token"]}).status_code == 200
    assert len(api.box.info["portals"]) == 3
