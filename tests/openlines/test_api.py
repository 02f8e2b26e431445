"""Dialogs and bot admin API: who may read which portal, filters and paging, CSV, settings, lines, attach."""

import csv
import io
import time

import pytest

from tests.openlines.helpers import bot_lines_rows, count, dialogs, lines_event, make_portal


@pytest.fixture
def services(bot_app):
    return bot_app.extensions["services"]


@pytest.fixture
def client(bot_app):
    return bot_app.test_client()


@pytest.fixture
def two_portals(services, client):
    """Two portals with dialogs: a has 3 (line 1 ×2, line 2 ×1), b has 1."""
    a, b = make_portal(services, "a"), make_portal(services, "b")
    for chat, line, name, text in (
        (1, "1", "Ivan", "Где заказ?"),
        (2, "1", "Maria", "Hello"),
        (3, "2", "Oleg", "=HYPERLINK(1)"),
    ):
        client.post("/python_bot/", data=lines_event(a, chat_id=chat, line_id=line, client_name=name, text=text))
    client.post("/python_bot/", data=lines_event(b, chat_id=99, client_name="Other portal client"))
    services.openlines.process_ready(trigger="test", budget_s=30)
    return a, b


def test_no_token_is_401(client, two_portals):
    assert client.get("/api/dialogs").status_code == 401
    assert client.get("/api/dialogs", headers={"X-API-Token": "wrong"}).status_code == 401


def test_portal_token_sees_only_its_own_portal(client, two_portals):
    a, b = two_portals
    page = client.get("/api/dialogs", headers={"X-API-Token": b["api_token"]}).get_json()
    assert [d["chat_id"] for d in page["items"]] == [99]
    assert client.get("/api/dialogs/1", headers={"X-API-Token": b["api_token"]}).status_code == 404
    assert (
        client.get(f"/api/dialogs?portal={a['member_id']}", headers={"X-API-Token": b["api_token"]}).status_code == 403
    )


def test_token_in_the_query_string_is_accepted(client, two_portals):
    a, _ = two_portals
    assert client.get(f"/api/dialogs?token={a['api_token']}").get_json()["total"] == 3


def test_global_token_must_name_the_portal(bot_app, client, two_portals):
    a, _ = two_portals
    token = {"X-API-Token": bot_app.config["ADMIN_API_TOKEN"]}
    missing = client.get("/api/dialogs", headers=token)
    assert (missing.status_code, missing.get_json()["error"]) == (400, "portal_required")
    assert client.get("/api/dialogs?portal=nope", headers=token).status_code == 404
    assert client.get(f"/api/dialogs?portal={a['member_id']}", headers=token).get_json()["total"] == 3


def test_iframe_bearer_of_a_portal_admin(bot_app, services, client, two_portals):
    from models.security import Identity

    a, b = two_portals
    admin = Identity(a["member_id"], 1, a["id"], "a.bitrix24.test", "Anna", True)
    employee = Identity(a["member_id"], 2, a["id"], "a.bitrix24.test", "Emil", False)
    admin_token, _ = services.signer.issue(admin)
    employee_token, _ = services.signer.issue(employee)
    ok = client.get("/api/dialogs", headers={"Authorization": f"Bearer {admin_token}"})
    assert ok.get_json()["total"] == 3
    assert client.get("/api/dialogs", headers={"Authorization": f"Bearer {employee_token}"}).status_code == 403
    assert (
        client.get(
            f"/api/dialogs?portal={b['member_id']}", headers={"Authorization": f"Bearer {admin_token}"}
        ).status_code
        == 403
    )


def test_paging_and_filters(client, two_portals):
    a, _ = two_portals
    h = {"X-API-Token": a["api_token"]}
    page = client.get("/api/dialogs?per_page=2&page=2", headers=h).get_json()
    assert (page["page"], page["per_page"], page["total"], len(page["items"])) == (2, 2, 3, 1)
    assert set(page) == {"items", "page", "per_page", "total"}
    assert client.get("/api/dialogs?line_id=2", headers=h).get_json()["total"] == 1
    assert client.get("/api/dialogs?status=transferred", headers=h).get_json()["total"] == 3
    assert client.get("/api/dialogs?status=new", headers=h).get_json()["total"] == 0
    assert [d["client"]["name"] for d in client.get("/api/dialogs?q=заказ", headers=h).get_json()["items"]] == ["Ivan"]
    assert client.get("/api/dialogs?q=%25", headers=h).get_json()["total"] == 0  # % is literal
    future = int(time.time()) + 3600
    assert client.get(f"/api/dialogs?from={future}", headers=h).get_json()["total"] == 0
    assert client.get("/api/dialogs?to=2000-01-01", headers=h).get_json()["total"] == 0


@pytest.mark.parametrize(
    "query",
    ["per_page=0", "per_page=101", "page=0", "page=x", "status=bogus", "line_id=a", "from=yesterday", "q=" + "x" * 101],
)
def test_bad_filters_are_400(client, two_portals, query):
    a, _ = two_portals
    response = client.get(f"/api/dialogs?{query}", headers={"X-API-Token": a["api_token"]})
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_filter"


def test_one_dialog_with_messages_and_outcome(client, two_portals):
    a, _ = two_portals
    body = client.get("/api/dialogs/1", headers={"X-API-Token": a["api_token"]}).get_json()
    assert body["client"] == {"id": "599", "name": "Ivan"}
    assert [(m["author"], m["text"]) for m in body["messages"]] == [("client", "Где заказ?")]
    assert body["handoff"]["state"] == "done" and body["handoff"]["method"] == "imopenlines.bot.session.operator"
    assert body["crm"] == {"LEAD": 1209}


def test_csv_export_with_filters_and_formula_guard(client, two_portals):
    a, _ = two_portals
    response = client.get("/api/dialogs.csv?line_id=2", headers={"X-API-Token": a["api_token"]})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert table[0][0] == "chat_id" and len(table) == 2
    assert table[1][0] == "3" and table[1][-1] == "'=HYPERLINK(1)"


def test_users_lists_employees(client, two_portals):
    a, _ = two_portals
    body = client.get("/api/users", headers={"X-API-Token": a["api_token"]}).get_json()
    assert body == {"items": [{"id": "1", "name": "Anna", "last_name": "Admin", "position": "CEO"}]}


def test_users_when_the_portal_is_down_is_503(client, two_portals, rest):
    a, _ = two_portals
    rest.down = "503"
    response = client.get("/api/users", headers={"X-API-Token": a["api_token"]})
    assert (response.status_code, response.get_json()["error"]) == (503, "portal_unavailable")


def test_enable_disable_and_status(bot_app, services, client, two_portals):
    a, _ = two_portals
    h = {"X-API-Token": a["api_token"]}
    assert client.post("/api/admin/disable", headers=h).get_json() == {"enabled": False}
    assert services.openlines.settings_row(a["id"])["enabled"] is False
    status = client.get("/api/admin/status", headers=h).get_json()["bot"]
    assert status["enabled"] is False and status["bot_registered"] is True and status["bot_id"] == 39
    assert status["inbox_backlog"] == 0 and status["credential"] == "active" and status["last_event_at"]
    assert client.post("/api/admin/enable", headers=h).get_json() == {"enabled": True}
    assert services.openlines.settings_row(a["id"])["enabled"] is True
    overall = client.get("/api/admin/status", headers={"X-API-Token": bot_app.config["ADMIN_API_TOKEN"]}).get_json()
    assert overall["bot"]["inbox"] == {"done": 4} and overall["bot"]["portals_with_bot"] == 2


def test_settings_round_trip_and_validation(services, client, two_portals):
    a, _ = two_portals
    h = {"X-API-Token": a["api_token"]}
    body = {
        "greeting": "Здравствуйте!",
        "timezone": "Asia/Yekaterinburg",
        "transfer_mode": "queue",
        "queue_id": "2",
        "lines": {
            "1": {
                "schedule": {"mon": [["09:00", "18:00"]]},
                "out_of_hours_text": "Закрыто",
                "out_of_hours_action": "finish",
            }
        },
    }
    saved = client.put("/api/admin/bot/settings", json=body, headers=h).get_json()
    assert saved["greeting"] == "Здравствуйте!" and saved["timezone"] == "Asia/Yekaterinburg"
    assert saved["lines"] == [
        {
            "line_id": "1",
            "name": None,
            "attached": False,
            "schedule": {"mon": [["09:00", "18:00"]]},
            "out_of_hours_text": "Закрыто",
            "out_of_hours_action": "finish",
        }
    ]
    assert client.get("/api/admin/bot/settings", headers=h).get_json() == saved
    [line] = bot_lines_rows(services)
    assert line["out_of_hours_action"] == "finish"
    for bad in (
        {"timezone": "Mars/Olympus"},
        {"transfer_mode": "robot"},
        {"greeting": 5},
        {"lines": {"1": {"schedule": {"mon": [["18:00", "09:00"]]}}}},
        {"lines": {"1": {"schedule": {"funday": []}}}},
        {"lines": {"x": {}}},
        {"lines": {"1": {"out_of_hours_action": "explode"}}},
        {"enabled": "yes"},
    ):
        response = client.put("/api/admin/bot/settings", json=bad, headers=h)
        assert response.status_code == 400, bad
    assert (
        client.put("/api/admin/bot/settings", data="[", headers={**h, "Content-Type": "application/json"}).status_code
        == 400
    )


def test_lines_and_attach(services, client, two_portals, rest):
    a, _ = two_portals
    h = {"X-API-Token": a["api_token"]}
    listed = client.get("/api/admin/lines", headers=h).get_json()["items"]
    assert [(line["line_id"], line["bot_attached"]) for line in listed] == [("1", False), ("2", False)]
    answer = client.post("/api/admin/bot/attach", json={"line_id": "2"}, headers=h)
    assert answer.status_code == 200 and answer.get_json()["attached"] is True
    assert rest.of(a["member_id"], "imopenlines.config.update") == [
        {
            "CONFIG_ID": "2",
            "PARAMS": {
                "WELCOME_BOT_ENABLE": "Y",
                "WELCOME_BOT_ID": 39,
                "WELCOME_BOT_JOIN": "first",
                "WELCOME_BOT_LEFT": "queue",
            },
        }
    ]
    assert client.get("/api/admin/status", headers=h).get_json()["bot"]["lines_attached"] == ["2"]
    assert client.post("/api/admin/bot/attach", json={"line_id": "two"}, headers=h).status_code == 400


def test_attach_without_a_registered_bot_is_409(services, client):
    portal = make_portal(services, bot_id=None)
    response = client.post("/api/admin/bot/attach", json={"line_id": "1"}, headers={"X-API-Token": portal["api_token"]})
    assert (response.status_code, response.get_json()["error"]) == (409, "bot_not_registered")


def test_reinit_db_is_idempotent_and_global_only(bot_app, client, two_portals):
    a, _ = two_portals
    assert client.post("/api/admin/reinit_db", headers={"X-API-Token": a["api_token"]}).status_code == 403
    token = {"X-API-Token": bot_app.config["ADMIN_API_TOKEN"]}
    for _ in range(2):
        body = client.post("/api/admin/reinit_db", headers=token).get_json()
        assert body["ok"] is True and body["missing"] == [] and "dialogs" in body["tables"]
    assert count(bot_app.extensions["services"], dialogs) == 4  # nothing dropped


def test_error_words_in_both_languages():
    from routes.i18n import CATALOG

    for key in (
        "error.portal_required",
        "error.bad_schedule",
        "error.stale_event",
        "bot.private_reply",
        "bot.out_of_hours",
    ):
        assert CATALOG["ru"][key] and CATALOG["en"][key] and CATALOG["ru"][key] != CATALOG["en"][key]
