"""Calendar methods as a portal answers them (spec §4.2-§4.3), batch with references, and the «Календарь» page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode


def _request(example: Any, name: str) -> dict[str, Any]:
    return {k: v for k, v in example(name).items() if k != "auth"}


def test_add_keeps_attendees_reminders_and_crm_fields(api: Any, example: Any) -> None:
    host = api.mint(user_id=2)["access_token"]
    event_id = api.post("calendar.event.add", host, _request(example, "rest-calendar.event.add-request.json")).json()[
        "result"
    ]
    row = api.call("calendar.event.getbyid", host, id=event_id).json()["result"]
    assert row["IS_MEETING"] is True and row["MEETING_HOST"] == "2"
    assert [a["id"] for a in row["ATTENDEE_LIST"]] == [2, 1, 3]
    assert row["REMIND"] == [{"type": "min", "count": 20}]
    assert row["CRM_FIELDS"] == ["C_5", "L_11"]
    assert row["LOCATION"] == "New York" and row["DT_SKIP_TIME"] == "Y"
    state = api.control("GET", "portals/portal1/state").json()
    [stored] = state["calendar_events"]
    assert stored["ID"] == str(event_id) and stored["params"]["attendees"] == [1, 2, 3]


def test_update_rules_for_organizer_and_attendees(api: Any, example: Any) -> None:
    organizer = api.mint(user_id=2)["access_token"]
    other = api.mint(user_id=1)["access_token"]
    request = _request(example, "rest-calendar.event.add-request.json")
    event_id = api.post("calendar.event.add", organizer, request).json()["result"]
    base = {"id": event_id, "type": "user", "ownerId": 2}
    refused = api.post("calendar.event.update", other, {**base, "name": "Чужая правка"})
    assert refused.status_code == 400 and refused.json()["error"] == ""
    allowed = api.post("calendar.event.update", other, {**base, "host": 2, "name": "Правка с host"})
    assert allowed.status_code == 200 and allowed.json()["result"] == event_id
    row = api.call("calendar.event.getbyid", organizer, id=event_id).json()["result"]
    assert row["NAME"] == "Правка с host" and row["MEETING_HOST"] == "2"

    api.post("calendar.event.update", organizer, {**base, "location": "Зал 2"})  # no is_meeting: attendees kept
    kept = api.call("calendar.event.getbyid", organizer, id=event_id).json()["result"]
    assert [a["id"] for a in kept["ATTENDEE_LIST"]] == [2, 1, 3] and kept["LOCATION"] == "Зал 2"
    api.post("calendar.event.update", organizer, {**base, "is_meeting": "Y"})  # no attendees: cleared
    cleared = api.call("calendar.event.getbyid", organizer, id=event_id).json()["result"]
    assert [a["id"] for a in cleared["ATTENDEE_LIST"]] == [2]

    assert api.post("calendar.event.delete", organizer, {"id": event_id}).json()["result"] is True
    gone = api.call("calendar.event.getbyid", organizer, id=event_id)
    assert gone.status_code == 400 and gone.json()["error"] == ""
    state = api.control("GET", "portals/portal1/state").json()
    assert state["calendar_events"] == []
    assert [e["ID"] for e in state["calendar_deleted"]] == [str(event_id)]
    assert state["calendar_deleted"][0]["deleted_by"] == 2


def test_add_error_shape(api: Any, example: Any) -> None:
    token = api.mint()["access_token"]
    request = _request(example, "rest-calendar.event.add-request.json")
    del request["name"]
    missing = api.post("calendar.event.add", token, request)
    assert missing.status_code == 400 and missing.json() == example("rest-calendar.event.add-error.json")


def test_batch_of_fifty_with_references_and_halt(api: Any, example: Any) -> None:
    token = api.mint(user_id=2)["access_token"]
    add = "calendar.event.add?" + urlencode(
        {"type": "user", "ownerId": 2, "name": "Встреча", "from": "2025-03-20T15:00:00+03:00"}
    )
    commands = {f"e{i}": add for i in range(48)}
    commands["get"] = "calendar.event.getbyid?id=$result[e0]"
    commands["rename"] = "calendar.event.update?id=$result[e1]&type=user&ownerId=2&name=$result[get][NAME]-2"
    # A form post double-encodes the commands, as Bitrix24 clients send them.
    form = {"auth": token, "halt": "0", **{f"cmd[{key}]": value for key, value in commands.items()}}
    answer = api.http.post(api.rest_url(0) + "batch", data=form)
    assert answer.status_code == 200
    body = answer.json()["result"]
    assert set(body) == set(example("rest-batch.json")["result"])
    assert len(body["result"]) == 50 and body["result_error"] == []
    assert body["result"]["get"]["ID"] == str(body["result"]["e0"])
    assert body["result"]["rename"] == body["result"]["e1"]
    renamed = api.call("calendar.event.getbyid", token, id=body["result"]["e1"]).json()["result"]
    assert renamed["NAME"] == "Встреча-2"
    assert len(api.control("GET", "portals/portal1/state").json()["calendar_events"]) == 48

    too_many = api.post("batch", token, {"cmd": {**commands, "extra": "profile"}})
    assert too_many.status_code == 400 and too_many.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"

    halted = api.post(
        "batch",
        token,
        {"halt": 1, "cmd": {"bad": "calendar.event.add?type=user&ownerId=2", "never": add}},
    ).json()["result"]
    halt1 = example("rest-batch-error-halt1.json")["result"]
    assert set(halted) == set(halt1) and halted["result"] == [] and list(halted["result_error"]) == ["bad"]
    assert halted["result_error"]["bad"]["error"] == ""
    assert halted["result_total"] == [] and halted["result_next"] == [] and halted["result_time"] == []
    assert len(api.control("GET", "portals/portal1/state").json()["calendar_events"]) == 48  # "never" never ran


def test_calendar_page_lists_events_and_notifications_newest_first(api: Any, example: Any) -> None:
    token = api.mint(user_id=2)["access_token"]
    first = api.post("calendar.event.add", token, _request(example, "rest-calendar.event.add-request.json")).json()[
        "result"
    ]
    second = api.post(
        "calendar.event.add",
        token,
        {
            "type": "user",
            "ownerId": 2,
            "name": "<b>Созвон</b>",
            "from": "2025-03-20T15:00:00+03:00",
            "to": "2025-03-20T16:00:00+03:00",
            "description": "Ссылка: https://telemost.yandex.ru/j/123",
            "is_meeting": "Y",
            "attendees": [3],
        },
    ).json()["result"]
    deleted = api.post(
        "calendar.event.add", token, {"type": "user", "ownerId": 2, "name": "Отменённая", "from": "2025-03-21"}
    ).json()["result"]
    api.post("calendar.event.delete", token, {"id": deleted})
    for text in ("Первое уведомление", "Второе уведомление"):
        api.post("im.notify.system.add", token, {"USER_ID": 3, "MESSAGE": text})

    redirect = api.control("GET", "portals/portal1/calendar?user_id=2", allow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == f"{api.box.info['portals'][0]['base']}/calendar/?user_id=2"
    page = api.http.get(redirect.headers["Location"])
    assert page.status_code == 200
    html = page.text
    ids = re.findall(r'class="card calendar-event[^"]*" data-id="(\d+)"', html)
    assert ids == [str(deleted), str(second), str(first)]
    assert re.search(rf'class="card calendar-event deleted" data-id="{deleted}"', html)
    assert "&lt;b&gt;Созвон&lt;/b&gt;" in html and "<b>Созвон</b>" not in html
    assert "20.03.2025 15:00 — 20.03.2025 16:00" in html
    assert "Мария Смирнова (организатор)" in html and "John Smith" in html
    assert "Место: New York" in html and "https://telemost.yandex.ru/j/123" in html
    assert "Напоминания: 20 мин" in html and "CRM: C_5, L_11" in html
    assert html.index("Второе уведомление") < html.index("Первое уведомление")
    assert 'id="nav-calendar" class="active"' in html
    assert api.http.get(f"{api.box.info['portals'][0]['base']}/calendar/?user_id=999").status_code == 404
