"""Meetings from a CRM card (issue 10 item 1) over real HTTP: the sandbox portal and a gunicorn app.

The install binds the four card tabs in its set-up batch; a card's tab opens the app with the record in
the boot data; a conference made there is bound to the record (stored, in the calendar event's
`crm_fields`, listed by `crm=deal:42`); the record's responsible person comes from crm.<entity>.get.
"""

from __future__ import annotations

import html
import re

import requests

from database import conferences, credentials
from models.crm import PLACEMENTS
from models.vault import user_subject
from tests.integration.helpers import boot_data, frame_post, mint, portal_info, portal_rows, table_rows, update_rows

SCOPE_WITHOUT_CRM = "calendar,im,imbot,imopenlines,user"


def install(stack, name: str = "portal1") -> dict:
    """The sandbox installs the app (ONAPPINSTALL) and answers what the app said."""
    return stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)


def open_tab(stack, user_id: int, placement: str, options: str) -> requests.Response:
    """The iframe POST of a CRM card's tab, with the user's fresh tokens."""
    application_token = portal_info(stack)["application_token"]
    return frame_post(
        stack,
        mint(stack, user_id=user_id),
        application_token=application_token,
        PLACEMENT=placement,
        PLACEMENT_OPTIONS=options,
    )


def session_for(stack, user_id: int = 1, placement: str = "CRM_DEAL_DETAIL_TAB", record: str = "42") -> str:
    """The bearer token of a verified open of a deal's tab."""
    opened = open_tab(stack, user_id, placement, f'{{"ID":"{record}"}}')
    assert opened.status_code == 200, opened.text
    return boot_data(opened.text)["token"]


def api(stack, token: str, method: str, path: str, **kwargs) -> requests.Response:
    """A call to the app's JSON API with the session token."""
    return requests.request(
        method, f"{stack.app_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs
    )


def connected(stack) -> None:
    """The installed portal with a Yandex account connected."""
    result = install(stack)
    assert result["status"] == 200, result["body"]
    [row] = portal_rows(stack)
    done = stack.connect_yandex(row["member_id"])
    assert done.returncode == 0, done.stderr


MEETING = {
    "name": "Встреча по сделке",
    "start_date": "2030-04-02",
    "start_time": "11:00",
    "timezone": "Europe/Moscow",
    "create_calendar_event": True,
}


def test_install_binds_the_four_card_tabs_in_the_setup_batch(live_stack):
    result = install(live_stack)
    assert result["status"] == 200, result["body"]
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    bound = {(p["placement"], p["handler"]) for p in state["placements"]}
    assert bound == {(code, f"{live_stack.app_url}/") for code in PLACEMENTS}
    assert {p["title"] for p in state["placements"]} == {"Встречи Телемоста"}
    assert all(
        p["langAll"] == {"ru": {"TITLE": "Встречи Телемоста"}, "en": {"TITLE": "Telemost meetings"}}
        for p in state["placements"]
    )
    calls = live_stack.control("GET", "/_sandbox/portals/portal1/calls")
    binds = [c for c in calls if c["method"] == "placement.bind"]
    # Inside the set-up batch (with the bot's registration): no round trip of their own.
    assert len(binds) == 4 and all(c["batch"] is not None for c in binds)
    [row] = portal_rows(live_stack)
    assert row["setup_version"] == row["version"] and row["bot_id"]


def test_reinstall_binds_each_tab_once(live_stack):
    install(live_stack)
    install(live_stack)
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    assert sorted(p["placement"] for p in state["placements"]) == sorted(PLACEMENTS)


def test_setup_goes_on_without_the_placement_and_crm_scopes(live_stack):
    live_stack.control("POST", "/_sandbox/config", {"bitrix_scope": SCOPE_WITHOUT_CRM})
    try:
        result = install(live_stack)
    finally:
        live_stack.control(
            "POST", "/_sandbox/config", {"bitrix_scope": "calendar,crm,im,imbot,imopenlines,placement,user"}
        )
    assert result["status"] == 200, result["body"]
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    assert state["placements"] == []
    [row] = portal_rows(live_stack)
    assert (row["status"], row["setup_version"]) == ("installed", row["version"])
    assert row["bot_id"] and len(state["bots"]) == 1
    refused = [
        c for c in live_stack.control("GET", "/_sandbox/portals/portal1/calls") if c["method"] == "placement.bind"
    ]
    assert len(refused) == 4 and {c["status"] for c in refused} == {401}
    log = (live_stack.log_dir / "app.log").read_text(encoding="utf-8")
    assert "did not bind the deal card tab (insufficient_scope)" in log


def test_card_tab_open_carries_the_record_in_the_boot_data(live_stack):
    install(live_stack)
    opened = open_tab(live_stack, 2, "CRM_DEAL_DETAIL_TAB", '{"ID":"42"}')
    assert opened.status_code == 200
    boot = boot_data(opened.text)
    assert (boot["placement"], boot["crm"]) == ("CRM_DEAL_DETAIL_TAB", {"entity": "deal", "id": 42})
    company = boot_data(open_tab(live_stack, 2, "CRM_COMPANY_DETAIL_TAB", '{"ID":3}').text)
    assert company["crm"] == {"entity": "company", "id": 3}


def test_card_tab_open_ignores_what_is_not_a_record(live_stack):
    install(live_stack)
    for placement, options in (
        ("CRM_DEAL_DETAIL_TAB", '{"ID":"-1"}'),
        ("CRM_DEAL_DETAIL_TAB", '{"ID":"42abc"}'),
        ("CRM_DEAL_DETAIL_TAB", "not json"),
        ("CRM_DEAL_DETAIL_TAB", '["42"]'),
        ("CRM_DEAL_DETAIL_TAB", '{"ID":"99999999999"}'),
        ("CRM_INVOICE_DETAIL_TAB", '{"ID":"42"}'),
        ("DEFAULT", '{"ID":"42"}'),
    ):
        opened = open_tab(live_stack, 2, placement, options)
        assert opened.status_code == 200, (placement, options)
        boot = boot_data(opened.text)
        assert (boot["placement"], boot["crm"]) == ("DEFAULT", None), (placement, options)


def test_card_tab_open_is_verified_like_every_open(live_stack):
    install(live_stack)
    application_token = portal_info(live_stack)["application_token"]
    forged = frame_post(
        live_stack,
        {**mint(live_stack, user_id=2), "access_token": "forged"},
        application_token=application_token,
        PLACEMENT="CRM_DEAL_DETAIL_TAB",
        PLACEMENT_OPTIONS='{"ID":"42"}',
    )
    assert forged.status_code == 401
    assert 'id="boot"' not in forged.text


def test_sandbox_portal_page_opens_the_app_in_a_bound_tab(live_stack):
    install(live_stack)
    page = requests.get(
        f"{live_stack.base}/_sandbox/portals/portal1/open",
        params={"user_id": 2, "placement": "CRM_DEAL_DETAIL_TAB", "id": 42},
        timeout=30,
    )
    assert page.status_code == 200
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    assert fields["PLACEMENT"] == "CRM_DEAL_DETAIL_TAB"
    assert html.unescape(fields["PLACEMENT_OPTIONS"]) == '{"ID":"42"}'
    unbound = requests.get(
        f"{live_stack.base}/_sandbox/portals/portal1/open",
        params={"user_id": 2, "placement": "CRM_INVOICE_DETAIL_TAB", "id": 42},
        timeout=30,
    )
    assert unbound.status_code == 404


def test_conference_from_a_deal_tab_is_bound_and_its_event_carries_crm_fields(live_stack):
    connected(live_stack)
    token = session_for(live_stack, user_id=2)
    created = api(
        live_stack, token, "POST", "/api/conferences", json={**MEETING, "crm_binding": {"entity": "deal", "id": 42}}
    )
    assert created.status_code == 201, created.text
    assert created.json()["crm_binding"] == {"entity": "deal", "id": 42}
    [row] = table_rows(live_stack, conferences)
    assert row["crm_binding"] == '{"entity":"deal","id":42}'
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    [event] = [e for e in state["calendar_events"] if int(e["ID"]) == row["calendar_event_id"]]
    assert event["CRM_FIELDS"] == ["D_42"]
    # A later change keeps the binding and the event's crm_fields.
    changed = api(live_stack, token, "PATCH", f"/api/conferences/{row['id']}", json={"start_time": "12:00"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["crm_binding"] == {"entity": "deal", "id": 42}
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    [event] = [e for e in state["calendar_events"] if int(e["ID"]) == row["calendar_event_id"]]
    assert event["CRM_FIELDS"] == ["D_42"]


def test_crm_fields_prefix_per_entity_and_none_without_binding(live_stack):
    connected(live_stack)
    token = session_for(live_stack, user_id=2)
    expected = {}
    for entity, record_id, prefix in (("contact", 8, "C_8"), ("company", 3, "CO_3"), ("lead", 5, "L_5")):
        answer = api(
            live_stack,
            token,
            "POST",
            "/api/conferences",
            json={**MEETING, "name": entity, "crm_binding": {"entity": entity, "id": record_id}},
        )
        assert answer.status_code == 201, answer.text
        expected[answer.json()["calendar_event_id"]] = [prefix]
    plain = api(live_stack, token, "POST", "/api/conferences", json={**MEETING, "name": "plain"})
    assert plain.status_code == 201 and plain.json()["crm_binding"] is None
    expected[plain.json()["calendar_event_id"]] = []
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    assert {int(e["ID"]): e["CRM_FIELDS"] for e in state["calendar_events"]} == expected


def test_list_filter_by_crm_record(live_stack):
    connected(live_stack)
    token = session_for(live_stack, user_id=2)
    for name, binding in (("A", {"entity": "deal", "id": 42}), ("B", {"entity": "deal", "id": 43}), ("C", None)):
        body = {**MEETING, "name": name, **({"crm_binding": binding} if binding else {})}
        assert api(live_stack, token, "POST", "/api/conferences", json=body).status_code == 201
    deal42 = api(live_stack, token, "GET", "/api/conferences", params={"crm": "deal:42"}).json()
    assert ([i["name"] for i in deal42["items"]], deal42["total"]) == (["A"], 1)
    assert deal42["items"][0]["crm_binding"] == {"entity": "deal", "id": 42}
    contact42 = api(live_stack, token, "GET", "/api/conferences", params={"crm": "contact:42"}).json()
    assert (contact42["items"], contact42["total"]) == ([], 0)
    everything = api(live_stack, token, "GET", "/api/conferences").json()
    assert (sorted(i["name"] for i in everything["items"]), everything["total"]) == (["A", "B", "C"], 3)
    # Another user's tab on the same deal lists only their own meetings.
    other = session_for(live_stack, user_id=3)
    assert api(live_stack, other, "GET", "/api/conferences", params={"crm": "deal:42"}).json()["total"] == 0
    for bad in ("deal", "deal:", "deal:0", "deal:-1", "order:42", "deal:42:1", "deal:4294967296", "deal:١٢"):
        refused = api(live_stack, token, "GET", "/api/conferences", params={"crm": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["fields"] == {"crm": "invalid_crm_filter"}


def test_bad_crm_binding_is_refused_and_nothing_is_made(live_stack):
    connected(live_stack)
    token = session_for(live_stack, user_id=2)
    for binding in (
        {"entity": "order", "id": 42},
        {"entity": "deal", "id": 0},
        {"entity": "deal", "id": "42"},
        {"entity": "deal"},
        {"entity": "deal", "id": 42, "extra": 1},
        "deal:42",
    ):
        answer = api(live_stack, token, "POST", "/api/conferences", json={**MEETING, "crm_binding": binding})
        assert answer.status_code == 422, binding
        assert answer.json()["error"] == "validation_error"
    assert table_rows(live_stack, conferences) == []


def test_crm_context_names_the_responsible_person(live_stack):
    install(live_stack)
    token = session_for(live_stack, user_id=2)
    answer = api(live_stack, token, "GET", "/api/crm/context", params={"entity": "deal", "id": 42})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "entity": "deal",
        "id": 42,
        "title": "Поставка оборудования",
        "responsible_id": 2,
        "responsible_name": "Мария Смирнова",
    }
    contact = api(live_stack, token, "GET", "/api/crm/context", params={"entity": "contact", "id": 8}).json()
    assert (contact["title"], contact["responsible_id"]) == ("Ирина Соколова", 4)
    lead = api(live_stack, token, "GET", "/api/crm/context", params={"entity": "lead", "id": 5}).json()
    assert lead["responsible_id"] == 6
    missing = api(live_stack, token, "GET", "/api/crm/context", params={"entity": "deal", "id": 999})
    assert missing.status_code == 404
    assert missing.json()["error"] == "crm_not_found"
    assert missing.json()["message"] == "The CRM record was not found or has been deleted."
    for params in ({"entity": "order", "id": 42}, {"entity": "deal", "id": "x"}, {"entity": "deal"}, {}):
        assert api(live_stack, token, "GET", "/api/crm/context", params=params).status_code == 422, params
    assert requests.get(f"{live_stack.app_url}/api/crm/context?entity=deal&id=42", timeout=30).status_code == 401


def test_crm_context_without_the_crm_scope_says_so(live_stack):
    live_stack.control("POST", "/_sandbox/config", {"bitrix_scope": SCOPE_WITHOUT_CRM})
    try:
        install(live_stack)
        token = session_for(live_stack, user_id=2)
    finally:
        live_stack.control(
            "POST", "/_sandbox/config", {"bitrix_scope": "calendar,crm,im,imbot,imopenlines,placement,user"}
        )
    answer = api(live_stack, token, "GET", "/api/crm/context", params={"entity": "deal", "id": 42})
    assert answer.status_code == 403
    assert answer.json()["error"] == "crm_access_denied"


def test_crm_context_never_falls_back_to_the_portal_credential(live_stack):
    install(live_stack)
    token = session_for(live_stack, user_id=2)
    # The user's own pair is gone: the admin's portal credential must not read the record for them.
    assert update_rows(live_stack, credentials, credentials.c.subject == user_subject(2), status="needs_reauth") == 1
    live_stack.control("DELETE", "/_sandbox/portals/portal1/calls")
    answer = api(live_stack, token, "GET", "/api/crm/context", params={"entity": "deal", "id": 42})
    assert answer.status_code == 409
    assert answer.json()["error"] == "bitrix_user_token_missing"
    assert [
        c for c in live_stack.control("GET", "/_sandbox/portals/portal1/calls") if c["method"].startswith("crm.")
    ] == []
