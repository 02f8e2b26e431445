"""The bot webhook: forged and stale events refused with nothing written, duplicates acknowledged once,
Open Lines dialogs recorded and handed over, the switch, private chats."""

import json
import time
from urllib.parse import urlencode

import pytest

from tests.openlines.helpers import (
    bot_handoffs,
    bot_inbox,
    count,
    dialog_messages,
    dialogs,
    lines_event,
    make_portal,
    private_event,
    rows,
)


@pytest.fixture
def services(bot_app):
    return bot_app.extensions["services"]


@pytest.fixture
def client(bot_app):
    return bot_app.test_client()


def run_inbox(services):
    return services.openlines.process_ready(trigger="test", budget_s=30)


@pytest.mark.parametrize(
    "forgery",
    ["wrong_token", "other_portals_token", "missing_token", "stale_ts", "no_ts", "future_ts", "unknown_portal"],
)
def test_forged_events_are_refused_and_nothing_is_written(services, client, forgery):
    victim = make_portal(services, "victim")
    other = make_portal(services, "other")
    form = lines_event(victim)
    if forgery == "wrong_token":
        form["auth[application_token]"] = "0" * 32
    elif forgery == "other_portals_token":
        form["auth[application_token]"] = other["app_token"]
    elif forgery == "missing_token":
        del form["auth[application_token]"]
    elif forgery == "stale_ts":
        form["ts"] = str(int(time.time()) - 3600)
    elif forgery == "no_ts":
        del form["ts"]
    elif forgery == "future_ts":
        form["ts"] = str(int(time.time()) + 3600)
    elif forgery == "unknown_portal":
        form["auth[member_id]"] = "f" * 32
    response = client.post("/python_bot/", data=form)
    assert response.status_code == 403
    assert response.get_json()["error"] in ("bad_application_token", "stale_event")
    assert count(services, bot_inbox) == 0
    run_inbox(services)
    assert count(services, dialogs) == 0
    assert count(services, bot_handoffs) == 0


def test_bot_token_under_data_is_not_accepted_as_the_top_level_token(services, client):
    portal = make_portal(services)
    form = lines_event(portal, application_token="")
    form[f"data[BOT][{portal['bot_id']}][application_token]"] = portal["app_token"]
    assert client.post("/python_bot/", data=form).status_code == 403
    assert count(services, bot_inbox) == 0


def test_event_is_acknowledged_at_once_and_stored_without_tokens(services, client, rest):
    portal = make_portal(services)
    form = lines_event(portal)
    response = client.post("/python_bot/", data=form)
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted", "event": "ONIMBOTMESSAGEADD"}
    assert rest.calls == []  # nothing happened on the request path
    [row] = rows(services, bot_inbox)
    assert row["status"] == "pending"
    for secret in (form["auth[access_token]"], form["auth[refresh_token]"], portal["app_token"]):
        assert secret not in row["payload"]
    assert "access_token" not in row["payload"]


def test_handler_url_without_its_trailing_slash_is_served_not_redirected(services, client):
    portal = make_portal(services)
    response = client.post("/python_bot", data=lines_event(portal))
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted", "event": "ONIMBOTMESSAGEADD"}
    [row] = rows(services, bot_inbox)
    assert row["status"] == "pending"


def test_open_lines_dialog_is_recorded_and_handed_over(services, client, rest):
    portal = make_portal(services)
    assert client.post("/python_bot/", data=lines_event(portal, "ONIMBOTJOINCHAT")).status_code == 200
    assert client.post("/python_bot/", data=lines_event(portal, text="Где мой заказ?")).status_code == 200
    report = run_inbox(services)
    assert (report.done, report.handed_off, report.left) == (2, 1, 0)
    [dialog] = rows(services, dialogs)
    assert (dialog["chat_id"], dialog["dialog_id"], dialog["line_id"], dialog["connector"]) == (
        1775,
        "chat1775",
        "1",
        "livechat",
    )
    assert (dialog["client_id"], dialog["client_name"]) == ("599", "Ivan Petrov")
    assert json.loads(dialog["crm_bindings"]) == {"LEAD": 1209}
    assert dialog["first_message"] == "Где мой заказ?"
    assert (dialog["status"], dialog["transfer_outcome"]) == ("transferred", "transferred")
    [message] = rows(services, dialog_messages)
    assert (message["author_kind"], message["text"], message["message_id"]) == ("client", "Где мой заказ?", "17750")
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == [{"CHAT_ID": 1775}]
    assert rest.of(portal["member_id"], "imbot.message.add") == []  # no greeting configured
    [handoff] = rows(services, bot_handoffs)
    assert (handoff["state"], handoff["method"], handoff["attempts"]) == ("done", "imopenlines.bot.session.operator", 1)


def test_duplicate_delivery_gives_one_dialog_and_one_transfer(services, client, rest):
    portal = make_portal(services)
    form = lines_event(portal)
    first = client.post("/python_bot/", data=form)
    second = client.post("/python_bot/", data=form)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.get_json()["status"] == "duplicate"
    assert count(services, bot_inbox) == 1
    run_inbox(services)
    # Delivered again after processing (Bitrix24's queue may resend late): still nothing new.
    assert client.post("/python_bot/", data=form).get_json()["status"] == "duplicate"
    run_inbox(services)
    assert count(services, dialogs) == 1
    assert count(services, dialog_messages) == 1
    assert len(rest.of(portal["member_id"], "imopenlines.bot.session.operator")) == 1


def test_join_duplicate_with_fresh_bot_tokens_is_still_a_duplicate(services, client):
    portal = make_portal(services)
    form = lines_event(portal, "ONIMBOTJOINCHAT")
    assert client.post("/python_bot/", data=form).get_json()["status"] == "accepted"
    form[f"data[BOT][{portal['bot_id']}][access_token]"] = "another-minted-token"
    assert client.post("/python_bot/", data=form).get_json()["status"] == "duplicate"
    assert count(services, bot_inbox) == 1


def test_switch_off_hands_over_without_storing(services, client, rest):
    portal = make_portal(services)
    services.openlines.set_enabled(portal["id"], False)
    form = lines_event(portal, text="secret order number 42", client_name="Private Person")
    assert client.post("/python_bot/", data=form).status_code == 200
    [row] = rows(services, bot_inbox)
    assert "secret order number" not in row["payload"] and "Private Person" not in row["payload"]
    run_inbox(services)
    assert count(services, dialogs) == 0
    assert count(services, dialog_messages) == 0
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == [{"CHAT_ID": 1775}]


def test_switch_on_again_records(services, client):
    portal = make_portal(services)
    services.openlines.set_enabled(portal["id"], False)
    services.openlines.set_enabled(portal["id"], True)
    client.post("/python_bot/", data=lines_event(portal))
    run_inbox(services)
    assert count(services, dialogs) == 1


def test_greeting_then_operator(services, client, rest):
    portal = make_portal(services)
    services.openlines.update_settings(portal["id"], {"greeting": "Здравствуйте! Соединяю с оператором."})
    client.post("/python_bot/", data=lines_event(portal))
    run_inbox(services)
    sent = [(m, p) for member, m, p in rest.calls if member == portal["member_id"]]
    assert sent == [
        (
            "imbot.message.add",
            {"BOT_ID": "39", "DIALOG_ID": "chat1775", "MESSAGE": "Здравствуйте! Соединяю с оператором."},
        ),
        ("imopenlines.bot.session.operator", {"CHAT_ID": 1775}),
    ]


def test_transfer_to_a_configured_queue(services, client, rest):
    portal = make_portal(services)
    services.openlines.update_settings(portal["id"], {"transfer_mode": "queue", "queue_id": "2"})
    client.post("/python_bot/", data=lines_event(portal))
    run_inbox(services)
    assert rest.of(portal["member_id"], "imopenlines.bot.session.transfer") == [
        {"CHAT_ID": 1775, "QUEUE_ID": "2", "LEAVE": "Y"}
    ]
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == []


def test_chat_already_with_an_operator_counts_as_handed_over(services, client, rest):
    portal = make_portal(services)
    rest.with_operator.add((portal["member_id"], 1775))
    client.post("/python_bot/", data=lines_event(portal))
    run_inbox(services)
    [dialog] = rows(services, dialogs)
    assert (dialog["status"], dialog["transfer_outcome"]) == ("transferred", "already_with_operator")


def test_refused_hand_off_is_recorded_not_retried(services, client, rest, monkeypatch):
    from models.bitrix24 import Bitrix24Error

    portal = make_portal(services)
    original = rest.call

    def refuse(member_id, method, params):
        if method == "imopenlines.bot.session.operator":
            raise Bitrix24Error("ACCESS_DENIED", "no rights", 403)
        return original(member_id, method, params)

    monkeypatch.setattr(rest, "call", refuse)
    client.post("/python_bot/", data=lines_event(portal))
    run_inbox(services)
    [dialog] = rows(services, dialogs)
    assert (dialog["status"], dialog["transfer_outcome"]) == ("transfer_failed", "ACCESS_DENIED")
    [inbox] = rows(services, bot_inbox)
    assert (inbox["status"], inbox["last_error"]) == ("done", "ACCESS_DENIED")


def test_group_chat_is_not_intercepted(services, client, rest):
    from tests.conftest import load_fixture

    portal = make_portal(services)
    form = dict(load_fixture("event-ONIMBOTMESSAGEADD-group.json")["payload"])
    form.update(
        {
            "ts": str(int(time.time())),
            "auth[member_id]": portal["member_id"],
            "auth[application_token]": portal["app_token"],
        }
    )
    assert client.post("/python_bot/", data=form).status_code == 200
    run_inbox(services)
    assert count(services, dialogs) == 0
    assert rest.calls == []


@pytest.mark.parametrize(("language", "expected"), [("en", "Hello!"), ("ru", "Здравствуйте!"), ("de", "Hello!")])
def test_private_chat_gets_one_polite_answer_in_the_users_language(services, client, rest, language, expected):
    portal = make_portal(services, bot_id=567)
    client.post("/python_bot/", data=private_event(portal, language=language, message_id=1))
    client.post("/python_bot/", data=private_event(portal, language=language, message_id=2))
    run_inbox(services)
    [reply] = rest.of(portal["member_id"], "imbot.message.add")
    assert reply["DIALOG_ID"] == "27" and reply["MESSAGE"].startswith(expected)
    assert count(services, dialogs) == 0
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == []


def test_bot_delete_forgets_the_bot_id(services, client):
    from models.portal import Portal  # noqa: F401 - the service reads portals through PortalService

    portal = make_portal(services)
    form = {
        "event": "ONIMBOTDELETE",
        "ts": str(int(time.time())),
        "data[BOT_ID]": str(portal["bot_id"]),
        "data[BOT_CODE]": "telemost_openlines_bot",
        "auth[member_id]": portal["member_id"],
        "auth[application_token]": portal["app_token"],
    }
    assert client.post("/python_bot/", data=form).status_code == 200
    run_inbox(services)
    assert services.portals.get(portal["id"]).bot_id is None


def test_webhook_answers_under_the_base_path(tmp_path, rest):
    from app import create_app
    from tests.openlines.helpers import bot_config, patch_rest

    application = create_app(bot_config(tmp_path, BASE_PATH="/telemost-app"))
    patch_rest(application.extensions["services"], rest)
    services = application.extensions["services"]
    portal = make_portal(services)
    response = application.test_client().post("/telemost-app/python_bot/", data=lines_event(portal))
    assert response.status_code == 200
    assert count(services, bot_inbox) == 1
    application.extensions["db"].dispose()


def test_malformed_form_is_a_400_not_a_500(services, client):
    portal = make_portal(services)
    form = lines_event(portal)
    form["data[PARAMS]"] = "scalar and group at once"
    assert client.post("/python_bot/", data=form).status_code == 400
    assert count(services, bot_inbox) == 0


def test_background_worker_processes_after_the_answer(tmp_path, rest):
    from app import create_app
    from tests.openlines.helpers import bot_config, patch_rest

    application = create_app(bot_config(tmp_path, BOT_BACKGROUND_WORKER=True))
    services = application.extensions["services"]
    patch_rest(services, rest)
    portal = make_portal(services)
    assert application.test_client().post("/python_bot/", data=lines_event(portal)).status_code == 200
    assert services.openlines.drain(10)
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == [{"CHAT_ID": 1775}]
    assert rows(services, bot_inbox)[0]["status"] == "done"
    application.extensions["db"].dispose()


def test_bot_delete_is_honoured_with_the_switch_off(services, client):
    portal = make_portal(services)
    services.openlines.set_enabled(portal["id"], False)
    form = {
        "event": "ONIMBOTDELETE",
        "ts": str(int(time.time())),
        "data[BOT_ID]": str(portal["bot_id"]),
        "auth[member_id]": portal["member_id"],
        "auth[application_token]": portal["app_token"],
    }
    client.post("/python_bot/", data=form)
    run_inbox(services)
    assert services.portals.get(portal["id"]).bot_id is None


def test_session_id_from_dialog_get():
    from models.openlines.service import session_closed, session_of

    assert session_of({"entity_data_1": "Y|LEAD|12|N|N|108|1767600000|0|0|0"}) == "108"
    assert session_of({"session_id": 109, "entity_data_1": "Y|LEAD|12|N|N|108"}) == "109"
    assert session_of({"entity_data_1": "Y|LEAD"}) is None
    assert session_closed({"session_closed": True}) is True
    assert session_closed({"session": {"status": "closed"}}) is True
    assert session_closed({"session_closed": False, "status": "open"}) is False


def test_database_trouble_is_retried_and_a_bug_does_not_stop_the_inbox(services, client, monkeypatch):
    import sqlalchemy as sa

    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal, chat_id=1))
    client.post("/python_bot/", data=lines_event(portal, chat_id=2))
    calls = []

    def broken(portal_row, event, stored, owner):
        calls.append(stored["data"]["PARAMS"]["CHAT_ID"])
        if stored["data"]["PARAMS"]["CHAT_ID"] == "1":
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        raise KeyError("a bug")

    monkeypatch.setattr(services.openlines, "_handle", broken)
    report = run_inbox(services)
    assert (report.retried, report.failed, calls) == (1, 1, ["1", "2"])
    by_key = {r["event_key"]: (r["status"], r["last_error"]) for r in rows(services, bot_inbox)}
    assert by_key == {
        "ONIMBOTMESSAGEADD:10": ("pending", "database_error"),
        "ONIMBOTMESSAGEADD:20": ("failed", "internal_error"),
    }


def test_a_later_join_of_the_same_chat_is_new_but_hands_over_nothing_twice(services, client, rest):
    portal = make_portal(services)
    now = int(time.time())
    assert (
        client.post("/python_bot/", data=lines_event(portal, "ONIMBOTJOINCHAT", ts=now - 60)).get_json()["status"]
        == "accepted"
    )
    run_inbox(services)
    assert (
        client.post("/python_bot/", data=lines_event(portal, "ONIMBOTJOINCHAT", ts=now)).get_json()["status"]
        == "accepted"
    )
    run_inbox(services)
    assert count(services, bot_inbox) == 2
    assert len(rest.of(portal["member_id"], "imopenlines.bot.session.operator")) == 1


def test_form_body_that_is_not_utf8_is_a_400(services, client):
    portal = make_portal(services)
    body = urlencode(lines_event(portal)).encode() + b"&x=\xff"
    response = client.post("/python_bot/", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert count(services, bot_inbox) == 0


def test_query_string_fields_come_first_as_before(services, client):
    # The dispatcher reads the query string before the body (routes/common.form_items): a forged token in the
    # query wins over the right one in the body, so the event is refused.
    portal = make_portal(services)
    response = client.post("/python_bot/?auth%5Bapplication_token%5D=forged", data=lines_event(portal))
    assert response.status_code == 403
    assert count(services, bot_inbox) == 0
