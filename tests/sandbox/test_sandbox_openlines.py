"""Open Lines simulation: lines, client dialogs, welcome-bot events, operators, sessions and history."""

from __future__ import annotations

import time
from typing import Any

import pytest


def _install_with_bot(api: Any, receiver: Any, *, attach: bool = True) -> dict[str, Any]:
    """Install the app, register an Open Lines bot at the receiver and make it line 1's welcome bot."""
    assert api.control("POST", "portals/portal1/install", json={"mode": "event"}).status_code == 200
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
    if attach:
        updated = api.post(
            "imopenlines.config.update",
            admin,
            {
                "CONFIG_ID": 1,
                "PARAMS": {
                    "WELCOME_BOT_ENABLE": "Y",
                    "WELCOME_BOT_ID": bot_id,
                    "WELCOME_BOT_JOIN": "always",
                    "WELCOME_BOT_LEFT": "queue",
                },
            },
        )
        assert updated.status_code == 200 and updated.json()["result"] is True
    receiver.take()
    return {"admin": admin, "bot_id": bot_id}


def _write(api: Any, text: str, chat_id: Any = None, line_id: int = 1) -> dict[str, Any]:
    response = api.control(
        "POST",
        "portals/portal1/openlines/message",
        json={
            "line_id": line_id,
            "client": {"id": "client-7", "name": "Пётр Клиентов"},
            "text": text,
            "connector": "livechat",
            "chat_id": chat_id,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_lines_are_listed_updated_and_shown_in_state(api: Any, receiver: Any) -> None:
    admin = api.mint()["access_token"]
    listed = api.call("imopenlines.config.list.get", admin).json()["result"]
    assert [line["ID"] for line in listed] == ["1", "2"]
    assert listed[0]["WELCOME_BOT_ENABLE"] == "N"
    employee = api.mint(user_id=2)["access_token"]
    refused = api.post("imopenlines.config.update", employee, {"CONFIG_ID": 1, "PARAMS": {"WELCOME_BOT_ID": 5}})
    assert refused.status_code == 403 and refused.json()["error"] == "ACCESS_DENIED"
    unknown = api.post("imopenlines.config.update", admin, {"CONFIG_ID": 9, "PARAMS": {"WELCOME_BOT_ID": 5}})
    assert unknown.status_code == 400 and unknown.json()["error"] == "CONFIG_NOT_FOUND"
    ok = api.post(
        "imopenlines.config.update", admin, {"CONFIG_ID": 2, "PARAMS": {"WELCOME_BOT_ENABLE": "Y", "WELCOME_BOT_ID": 5}}
    )
    assert ok.json()["result"] is True
    lines = api.control("GET", "portals/portal1/state").json()["lines"]
    assert lines[1]["WELCOME_BOT_ENABLE"] == "Y" and lines[1]["WELCOME_BOT_ID"] == "5"
    assert lines[0]["WELCOME_BOT_ENABLE"] == "N"
    assert api.call("imopenlines.config.get", admin, CONFIG_ID=2).json()["result"]["WELCOME_BOT_ID"] == "5"


def test_new_dialog_sends_join_then_message_in_fixture_shapes(api: Any, receiver: Any, example: Any) -> None:
    setup = _install_with_bot(api, receiver)
    bot_id = setup["bot_id"]
    answer = _write(api, "Здравствуйте, нужен счёт")
    chat_id = answer["chat_id"]
    assert answer["dialog_id"] == f"chat{chat_id}" and answer["deliveries"] == [200, 200]
    join, message = receiver.take()
    assert [join["path"], message["path"]] == ["/bot/join", "/bot/message"]
    assert join["content_type"] == "application/x-www-form-urlencoded"
    application_token = api.control("GET", "portals/portal1").json()["application_token"]
    shapes = ((join, "event-ONIMBOTJOINCHAT-openlines.json"), (message, "event-ONIMBOTMESSAGEADD-openlines.json"))
    for posted, name in shapes:
        form = dict(posted["form"])
        expected = {key.replace("[BOT][39]", f"[BOT][{bot_id}]") for key in example(name)}
        assert expected <= set(form), expected - set(form)
        assert form["data[PARAMS][CHAT_ENTITY_TYPE]"] == "LINES"
        assert form["data[PARAMS][DIALOG_ID]"] == f"chat{chat_id}"
        assert form["data[PARAMS][CHAT_ID]"] == str(chat_id)
        assert form["data[PARAMS][CHAT_ENTITY_ID]"] == f"livechat|1|{chat_id}|client-7"
        assert form["data[PARAMS][CHAT_ENTITY_DATA_2]"].startswith("LEAD|")
        assert form["data[PARAMS][CHAT_ENTITY_DATA_2]"].endswith("|COMPANY|0|CONTACT|0|DEAL|0")
        assert form["data[USER][IS_CONNECTOR]"] == "Y" and form["data[USER][NAME]"] == "Пётр Клиентов"
        assert form["auth[application_token]"] == application_token
        assert form[f"data[BOT][{bot_id}][AUTH][application_token]"] == application_token
        assert form[f"data[BOT][{bot_id}][BOT_CODE]"] == "olbot"
        assert form[f"data[BOT][{bot_id}][AUTH][user_id]"] == str(bot_id)
        assert {"event", "event_handler_id", "ts", "auth[access_token]", "auth[member_id]"} <= set(form)
    assert dict(join["form"])["event"] == "ONIMBOTJOINCHAT"
    assert dict(message["form"])["event"] == "ONIMBOTMESSAGEADD"
    assert dict(message["form"])["data[PARAMS][MESSAGE]"] == "Здравствуйте, нужен счёт"
    # The bot's tokens work for answering in the chat.
    bot_token = dict(message["form"])[f"data[BOT][{bot_id}][access_token]"]
    reply = api.post("imbot.message.add", bot_token, {"DIALOG_ID": f"chat{chat_id}", "MESSAGE": "Минуту"})
    assert reply.status_code == 200

    again = _write(api, "Ещё вопрос", chat_id=chat_id)
    assert again["chat_id"] == chat_id and again["deliveries"] == [200]
    [follow_up] = receiver.take()
    assert follow_up["path"] == "/bot/message"
    assert dict(follow_up["form"])["data[PARAMS][MESSAGE]"] == "Ещё вопрос"
    deliveries = api.control("GET", "portals/portal1/state").json()["deliveries"]
    assert [d["event"] for d in deliveries[-3:]] == ["ONIMBOTJOINCHAT", "ONIMBOTMESSAGEADD", "ONIMBOTMESSAGEADD"]
    assert [d["status"] for d in deliveries[-3:]] == [200, 200, 200]


def test_operator_takes_dialog_finish_and_history(api: Any, receiver: Any) -> None:
    setup = _install_with_bot(api, receiver)
    admin, bot_id = setup["admin"], setup["bot_id"]
    bound = api.post("event.bind", admin, {"event": "OnSessionFinish", "handler": f"{receiver.url}/finish"})
    assert bound.json()["result"] is True
    chat_id = _write(api, "Добрый день")["chat_id"]
    receiver.take()
    bot_token = api.mint(user_id=bot_id)["access_token"]
    assert api.post("imbot.message.add", bot_token, {"DIALOG_ID": f"chat{chat_id}", "MESSAGE": "Соединяю"}).ok
    handed = api.post("imopenlines.bot.session.operator", bot_token, {"CHAT_ID": chat_id})
    assert handed.status_code == 200 and handed.json()["result"] is True
    twice = api.post("imopenlines.bot.session.operator", bot_token, {"CHAT_ID": chat_id})
    assert twice.status_code == 400 and twice.json()["error"] == "WRONG_CHAT"

    after = _write(api, "Алло?", chat_id=chat_id)
    assert after["deliveries"] == [] and receiver.take() == []
    replied = api.control(
        "POST", "portals/portal1/openlines/operator-reply", json={"chat_id": chat_id, "text": "Здравствуйте!"}
    )
    assert replied.status_code == 200 and replied.json()["operator_id"] == 2  # line 1's queue operator
    dialog = api.call("imopenlines.dialog.get", admin, CHAT_ID=chat_id).json()["result"]
    session_id = dialog["session_id"]
    assert dialog["session_closed"] is False and dialog["entity_type"] == "LINES"
    assert dialog["entity_data_1"].split("|")[5] == str(session_id)
    assert api.call("imopenlines.dialog.get", admin, DIALOG_ID=f"chat{chat_id}").json()["result"]["id"] == chat_id

    finished = api.control("POST", "portals/portal1/openlines/finish", json={"chat_id": chat_id})
    assert finished.status_code == 200
    assert finished.json() == {"chat_id": chat_id, "session_id": session_id, "deliveries": [200]}
    [event] = receiver.take()
    form = dict(event["form"])
    assert event["path"] == "/finish" and form["event"] == "ONSESSIONFINISH"
    assert form["data[chat][id]"] == str(chat_id) and form["data[session][id]"] == str(session_id)
    assert form["auth[application_token]"] == api.control("GET", "portals/portal1").json()["application_token"]
    closed = api.call("imopenlines.dialog.get", admin, CHAT_ID=chat_id).json()["result"]
    assert closed["session_closed"] is True and closed["session_id"] == session_id

    history = api.call("imopenlines.session.history.get", admin, CHAT_ID=chat_id, SESSION_ID=session_id).json()
    result = history["result"]
    assert result["chatId"] == chat_id and result["sessionId"] == session_id
    texts = [m["text"] for m in result["message"].values()]
    assert texts == ["Добрый день", "Соединяю", "Алло?", "Здравствуйте!", "Диалог завершен."]
    senders = [m["senderid"] for m in result["message"].values()]
    client_user = result["users"][senders[0]]
    assert client_user["connector"] is True and result["users"][str(bot_id)]["bot"] is True
    assert senders[1:] == [str(bot_id), senders[0], "2", "0"]

    assert api.control("POST", "portals/portal1/openlines/finish", json={"chat_id": chat_id}).status_code == 409
    late = api.control("POST", "portals/portal1/openlines/operator-reply", json={"chat_id": chat_id, "text": "x"})
    assert late.status_code == 409
    assert api.control("POST", "portals/portal1/openlines/finish", json={"chat_id": 999999}).status_code == 404

    state = api.control("GET", "portals/portal1/state").json()
    assert [o["action"] for o in state["openlines"]] == ["operator"]
    assert state["messages"][-1]["dialog_id"] == f"chat{chat_id}"
    [chat] = state["chats"]
    assert chat["sessions"][0]["status"] == "closed" and chat["sessions"][0]["closed_by"] == "operator"

    # The client writes again: a new session, and the welcome bot joins again (WELCOME_BOT_JOIN=always).
    reopened = _write(api, "Ещё одно", chat_id=chat_id)
    assert reopened["session_id"] != session_id and reopened["deliveries"] == [200, 200]
    assert [r["path"] for r in receiver.take()] == ["/bot/join", "/bot/message"]


def test_transfer_and_bot_finish(api: Any, receiver: Any) -> None:
    setup = _install_with_bot(api, receiver)
    bot_token = api.mint(user_id=setup["bot_id"])["access_token"]
    first = _write(api, "Раз")["chat_id"]
    wrong = api.post("imopenlines.bot.session.transfer", bot_token, {"CHAT_ID": first, "QUEUE_ID": 7})
    assert wrong.status_code == 400 and wrong.json()["error"] == "OPERATOR_WRONG"
    moved = api.post("imopenlines.bot.session.transfer", bot_token, {"CHAT_ID": first, "QUEUE_ID": 2})
    assert moved.json()["result"] is True
    second = _write(api, "Два")["chat_id"]
    assert api.post("imopenlines.bot.session.finish", bot_token, {"CHAT_ID": second}).json()["result"] is True
    receiver.take()
    assert _write(api, "После передачи", chat_id=first)["deliveries"] == []
    chats = {c["chat_id"]: c for c in api.control("GET", "portals/portal1/state").json()["chats"]}
    assert chats[first]["sessions"][-1]["operator_id"] == 3  # line 2's queue operator
    assert chats[second]["sessions"][-1]["closed_by"] == "bot"


def test_line_without_bot_delivers_nothing(api: Any, receiver: Any) -> None:
    _install_with_bot(api, receiver, attach=False)
    answer = _write(api, "Есть кто?")
    assert answer["deliveries"] == [] and receiver.take() == []
    [chat] = api.control("GET", "portals/portal1/state").json()["chats"]
    assert chat["sessions"][0]["status"] == "queue" and chat["messages"][0]["text"] == "Есть кто?"


def test_duplicate_and_late_delivery_knobs(api: Any, receiver: Any) -> None:
    _install_with_bot(api, receiver)
    assert api.control("POST", "config", json={"openlines_duplicate_delivery": True}).status_code == 200
    answer = _write(api, "Дважды")
    assert answer["deliveries"] == [200, 200, 200, 200]
    paths = [r["path"] for r in receiver.take()]
    assert paths == ["/bot/join", "/bot/join", "/bot/message", "/bot/message"]
    api.control("POST", "config", json={"openlines_duplicate_delivery": False, "openlines_delivery_delay_ms": 300})
    started = time.monotonic()
    late = _write(api, "Поздно", chat_id=answer["chat_id"])
    assert late["deliveries"] == [200] and time.monotonic() - started >= 0.3
    receiver.status = 500
    failed = _write(api, "Ошибка", chat_id=answer["chat_id"])
    assert failed["deliveries"] == [500]
    assert api.control("GET", "portals/portal1/state").json()["deliveries"][-1]["status"] == 500


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"line_id": 1, "text": ""}, 400),
        ({"line_id": 9, "text": "hi"}, 404),
        ({"line_id": 1, "text": "hi", "chat_id": 123456}, 404),
    ],
)
def test_bad_client_messages(api: Any, body: dict[str, Any], status: int) -> None:
    assert api.control("POST", "portals/portal1/openlines/message", json=body).status_code == status


def test_unreachable_bot_handler_is_recorded_not_raised(api: Any, receiver: Any) -> None:
    api.control("POST", "portals/portal1/install", json={"mode": "event"})
    admin = api.mint()["access_token"]
    dead = "http://127.0.0.1:9/bot"  # discard port: nothing listens
    bot_id = api.post(
        "imbot.register",
        admin,
        {"CODE": "deadbot", "TYPE": "O", "EVENT_HANDLER": dead, "PROPERTIES": {"NAME": "Бот"}},
    ).json()["result"]
    api.post(
        "imopenlines.config.update",
        admin,
        {"CONFIG_ID": 2, "PARAMS": {"WELCOME_BOT_ENABLE": "Y", "WELCOME_BOT_ID": bot_id}},
    )
    answer = _write(api, "Есть кто живой?", line_id=2)
    assert answer["deliveries"] == [None, None]
    failed = api.control("GET", "portals/portal1/state").json()["deliveries"][-2:]
    assert [d["url"] for d in failed] == [dead, dead]
    assert all(d["status"] is None and d["error"] for d in failed)
