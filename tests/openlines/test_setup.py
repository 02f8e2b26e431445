"""The bot's part of the portal set-up: the batch it asks for and what it records."""

import pytest

from models import openlines
from models.bitrix24 import Bitrix24Error
from tests.openlines.helpers import make_portal, rows


@pytest.fixture
def services(bot_app):
    return bot_app.extensions["services"]


def test_setup_commands_register_an_open_lines_bot_and_bind_session_finish(services):
    portal = services.portals.get(make_portal(services)["id"])
    commands = openlines.setup_commands(portal, services.portals.settings)
    method, params = commands["bot"]
    assert method == "imbot.register" and params["TYPE"] == "O" and params["CODE"] == "telemost_openlines_bot"
    assert {params[k] for k in ("EVENT_MESSAGE_ADD", "EVENT_WELCOME_MESSAGE", "EVENT_BOT_DELETE")} == {
        "https://app.example.com/python_bot/"
    }
    assert commands["session_finish"] == (
        "event.bind",
        {"event": "OnSessionFinish", "handler": "https://app.example.com/python_bot/"},
    )


def test_record_setup_stores_the_bot_and_the_version(services):
    from database import bot_settings

    portal = services.portals.get(make_portal(services, bot_id=None, version="3")["id"])
    bot_id = openlines.record_setup(
        services.db,
        portal,
        {"result": {"bot": 77, "session_finish": True}, "result_error": {}},
        "telemost_openlines_bot",
    )
    assert bot_id == 77 and services.portals.get(portal.id).bot_id == 77
    [settings] = rows(services, bot_settings)
    assert (settings["bot_registered_version"], bool(settings["session_finish_bound"]), bool(settings["enabled"])) == (
        "3",
        True,
        True,
    )


def test_re_registration_refused_finds_the_bot_in_the_list(services):
    portal = services.portals.get(make_portal(services, bot_id=None)["id"])
    answer = {
        "result": {
            "bots": {"77": {"ID": 77, "CODE": "someone_else"}, "78": {"ID": "78", "CODE": "telemost_openlines_bot"}}
        },
        "result_error": {
            "bot": {"error": "CODE_ERROR", "error_description": "Bot code is already used"},
            "session_finish": {"error": "", "error_description": "Handler already binded"},
        },
    }
    assert openlines.record_setup(services.db, portal, answer, "telemost_openlines_bot") == 78


def test_no_bot_at_all_is_an_error(services):
    portal = services.portals.get(make_portal(services, bot_id=None)["id"])
    with pytest.raises(Bitrix24Error) as caught:
        openlines.record_setup(
            services.db,
            portal,
            {"result": {}, "result_error": {"bot": {"error": "MAX_COUNT_ERROR", "error_description": "max"}}},
            "telemost_openlines_bot",
        )
    assert caught.value.code == "MAX_COUNT_ERROR"
    assert services.portals.get(portal.id).bot_id is None
