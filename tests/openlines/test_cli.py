"""The botctl of the seed, per portal: `flask portals list|purge`, `flask bot on|off|status|attach`."""

import json

import pytest
import sqlalchemy as sa

from database import credentials, portals
from tests.openlines.helpers import (
    bot_handoffs,
    bot_inbox,
    count,
    dialog_messages,
    dialogs,
    lines_event,
    make_portal,
)


@pytest.fixture
def services(bot_app):
    return bot_app.extensions["services"]


@pytest.fixture
def runner(bot_app):
    return bot_app.test_cli_runner()


@pytest.fixture
def portal_with_dialog(bot_app, services):
    portal = make_portal(services, "acme")
    bot_app.test_client().post("/python_bot/", data=lines_event(portal))
    services.openlines.process_ready(trigger="test", budget_s=30)
    return portal


def test_portals_list(runner, portal_with_dialog):
    result = runner.invoke(args=["portals", "list"])
    assert result.exit_code == 0
    assert portal_with_dialog["member_id"] in result.output and "acme.bitrix24.test" in result.output
    assert "bot=39 on" in result.output


@pytest.mark.parametrize("ref", ["member_id", "domain", "id"])
def test_bot_off_and_on_by_any_portal_reference(runner, services, portal_with_dialog, ref):
    value = {
        "member_id": portal_with_dialog["member_id"],
        "domain": "acme.bitrix24.test",
        "id": str(portal_with_dialog["id"]),
    }[ref]
    assert runner.invoke(args=["bot", "off", value]).exit_code == 0
    assert services.openlines.settings_row(portal_with_dialog["id"])["enabled"] is False
    assert runner.invoke(args=["bot", "on", value]).exit_code == 0
    assert services.openlines.settings_row(portal_with_dialog["id"])["enabled"] is True


def test_unknown_portal_is_an_error(runner):
    result = runner.invoke(args=["bot", "off", "nope"])
    assert result.exit_code == 1 and "no portal" in result.output


def test_bot_status(runner, portal_with_dialog):
    result = runner.invoke(args=["bot", "status", portal_with_dialog["member_id"]])
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert (body["bot_registered"], body["enabled"], body["inbox_backlog"]) == (True, True, 0)
    overall = json.loads(runner.invoke(args=["bot", "status"]).output)
    assert overall["portals_with_bot"] == 1


def test_bot_attach_lists_lines_then_attaches(runner, rest, portal_with_dialog):
    listed = runner.invoke(args=["bot", "attach", "acme.bitrix24.test"])
    assert listed.exit_code == 0 and "Site chat" in listed.output and "Telegram" in listed.output
    attached = runner.invoke(args=["bot", "attach", "acme.bitrix24.test", "2"])
    assert attached.exit_code == 0
    [update] = rest.of(portal_with_dialog["member_id"], "imopenlines.config.update")
    assert update["CONFIG_ID"] == "2" and update["PARAMS"]["WELCOME_BOT_ID"] == 39


def test_purge_asks_first(runner, services, portal_with_dialog):
    result = runner.invoke(args=["portals", "purge", portal_with_dialog["member_id"]], input="n\n")
    assert result.exit_code == 1
    assert count(services, dialogs) == 1 and count(services, portals) == 1


def test_purge_unregisters_the_bot_and_deletes_the_portals_data(runner, services, rest, portal_with_dialog):
    other = make_portal(services, "other")
    result = runner.invoke(args=["portals", "purge", portal_with_dialog["member_id"], "--yes"])
    assert result.exit_code == 0, result.output
    assert rest.of(portal_with_dialog["member_id"], "imbot.unregister") == [{"BOT_ID": 39}]
    for table in (dialogs, dialog_messages, bot_inbox, bot_handoffs):
        assert count(services, table) == 0
    with services.db.read() as conn:
        assert [r.member_id for r in conn.execute(sa.select(portals.c.member_id))] == [other["member_id"]]
        assert conn.execute(sa.select(sa.func.count()).select_from(credentials)).scalar() == 1


def test_purge_goes_on_when_the_portal_refuses(runner, services, rest, portal_with_dialog):
    rest.down = "503"
    result = runner.invoke(args=["portals", "purge", "acme.bitrix24.test", "--yes"])
    assert result.exit_code == 0
    assert json.loads(result.output)["unregistered"] is False
    assert count(services, portals) == 0
