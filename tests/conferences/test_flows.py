"""Create, update and delete against the sandbox: Telemost, calendar, notifications and the row in step."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

SLOT = {"start_date": "2030-03-04", "start_time": "15:30", "duration_minutes": 45, "timezone": "Europe/Moscow"}


def create(world, user, status=201, **body):
    """POST a conference and return the JSON answer."""
    body.setdefault("name", "Планёрка")
    response = world.client.post("/api/conferences", json=body, headers=user.headers)
    assert response.status_code == status, response.json
    return response.json


def top_level(calls):
    """HTTP requests the portal received (batch sub-calls excluded)."""
    return [c["method"] for c in calls if c["batch"] is None]


def test_plain_conference_makes_no_portal_call(world, alice, control):
    conference = create(world, alice)
    assert control.calls() == []
    assert conference["calendar_event_id"] is None and conference["start_date"] is None
    assert control.meetings()[0]["waiting_room_level"] == "PUBLIC"


def test_calendar_and_thirty_invitees_in_one_round_trip(world, alice, control):
    invitees = list(range(10, 40))
    conference = create(
        world,
        alice,
        create_calendar_event=True,
        invite_users=True,
        invitees=invitees,
        description="Итоги квартала",
        **SLOT,
    )
    assert top_level(control.calls()) == ["batch"]
    state = control.state()
    [event] = state["calendar_events"]
    assert conference["calendar_event_id"] == int(event["ID"])
    assert event["MEETING_HOST"] == "2" and event["IS_MEETING"] is True  # the user's own token organises it
    assert [a["id"] for a in event["ATTENDEE_LIST"]] == [2, *invitees]
    assert event["LOCATION"] == conference["link"]
    assert event["DESCRIPTION"] == f"Итоги квартала\n\nЯндекс Телемост: {conference['link']}"
    assert (event["DATE_FROM"], event["DATE_TO"], event["TZ_FROM"]) == (
        "04.03.2030 15:30:00",
        "04.03.2030 16:15:00",
        "Europe/Moscow",
    )
    assert event["REMIND"] == [{"type": "min", "count": "15"}]
    notes = state["notifications"]
    assert sorted(n["user_id"] for n in notes) == invitees
    assert all(conference["link"] in n["message"] and n["from_user_id"] == 2 for n in notes)
    row = world.row(conference["id"])
    assert row["status"] == "scheduled" and row["failed_step"] is None and row["pending_notifications"] == "[]"
    assert row["starts_at"] == int(datetime(2030, 3, 4, 12, 30, tzinfo=UTC).timestamp())


def test_user_time_zone_comes_from_the_profile_within_two_round_trips(world, alice, control):
    slot = {k: v for k, v in SLOT.items() if k != "timezone"}
    conference = create(
        world, alice, create_calendar_event=True, invite_users=True, invitees=list(range(10, 59)), **slot
    )
    assert top_level(control.calls()) == ["profile", "batch"]
    assert conference["timezone"] == "Europe/Moscow"
    assert len(control.state()["notifications"]) == 49


def test_broadcast_speakers_get_the_join_link_and_viewers_the_watch_link(world, alice, control):
    conference = create(
        world,
        alice,
        type="broadcast",
        live_stream_title="Town hall",
        invite_users=True,
        invitees=[3, 4],
        viewers=[4, 5, 6],
        cohosts=["a@corp.example", "b@corp.example"],
    )
    [meeting] = control.meetings()
    assert meeting["live_stream"]["title"] == "Town hall" and meeting["cohosts"] == ["a@corp.example", "b@corp.example"]
    assert conference["watch_url"] == meeting["live_stream"]["watch_url"]
    notes = {n["user_id"]: n["message"] for n in control.state()["notifications"]}
    assert set(notes) == {3, 4, 5, 6}
    for speaker in (3, 4):
        assert conference["link"] in notes[speaker] and conference["watch_url"] not in notes[speaker]
    for viewer in (5, 6):
        assert conference["watch_url"] in notes[viewer] and conference["link"] not in notes[viewer]


def test_notifications_use_the_portal_language(world, control):
    world.install("portal1")
    with world.services.db.write() as conn:
        from sqlalchemy import update

        from database import portals

        conn.execute(update(portals).values(language="en"))
    user = world.user(2)
    create(world, user, invite_users=True, invitees=[3])
    assert control.state()["notifications"][0]["message"].startswith("User 2 invites you to «Планёрка»")


def test_new_time_updates_the_event_and_tells_invitees(world, alice, control):
    conference = create(world, alice, create_calendar_event=True, invite_users=True, invitees=[3, 4], **SLOT)
    control.clear_calls()
    response = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"start_time": "17:00", "invitees": [3, 5]}, headers=alice.headers
    )
    assert response.status_code == 200
    assert top_level(control.calls()) == ["batch"]
    [event] = control.state()["calendar_events"]
    assert event["DATE_FROM"] == "04.03.2030 17:00:00"
    assert [a["id"] for a in event["ATTENDEE_LIST"]] == [2, 3, 5]  # 4 is taken off the event
    notes = {n["user_id"]: n["message"] for n in control.state()["notifications"]}
    assert "новое время" in notes[3] and "17:00" in notes[3]  # the same tag: the old invitation is replaced
    assert "приглашает" in notes[5] and "17:00" in notes[5]
    assert "приглашает" in notes[4]  # removed: not told of the new time
    row = world.row(conference["id"])
    assert (row["start_time"], json.loads(row["invitees"]), row["failed_step"]) == ("17:00", [3, 5], None)


def test_update_changes_telemost_settings_and_cohosts(world, alice, control):
    conference = create(world, alice, type="broadcast", cohosts=["a@corp.example"])
    response = world.client.put(
        f"/api/conferences/{conference['id']}",
        headers=alice.headers,
        json={
            "name": "Новое имя",
            "type": "broadcast",
            "waiting_room_level": "ORGANIZATION",
            "live_stream_title": "Stream",
            "cohosts": ["b@corp.example"],
        },
    )
    assert response.status_code == 200
    [meeting] = control.meetings()
    assert meeting["waiting_room_level"] == "ORGANIZATION" and meeting["cohosts"] == ["b@corp.example"]
    assert meeting["live_stream"]["title"] == "Stream"
    assert control.calls() == []
    assert world.row(conference["id"])["name"] == "Новое имя"


def test_calendar_switch_adds_and_removes_the_event(world, alice, control):
    conference = create(world, alice, **SLOT)
    on = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"create_calendar_event": True}, headers=alice.headers
    ).json
    assert on["calendar_event_id"] == int(control.state()["calendar_events"][0]["ID"])
    off = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"create_calendar_event": False}, headers=alice.headers
    ).json
    assert off["calendar_event_id"] is None and control.state()["calendar_events"] == []


@pytest.mark.parametrize(
    ("knob", "outcome", "deleted_upstream"),
    [("204", "deleted", True), ("405", "cancelled_locally", False), ("404", "cancelled_locally", False)],
)
def test_delete_removes_event_row_and_tells_invitees(world, alice, control, knob, outcome, deleted_upstream):
    control.configure(telemost_delete=knob)
    conference = create(world, alice, create_calendar_event=True, invite_users=True, invitees=[3, 4], **SLOT)
    control.clear_calls()
    response = world.client.delete(f"/api/conferences/{conference['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json == {"id": conference["id"], "deleted": True, "telemost": outcome, "failed_step": None}
    assert top_level(control.calls()) == ["batch"]
    state = control.state()
    assert state["calendar_events"] == []
    assert sorted(n["user_id"] for n in state["notifications"]) == [3, 4]
    assert all("отменена" in n["message"] for n in state["notifications"])
    assert world.rows() == []
    assert control.meetings()[0]["deleted"] is deleted_upstream
    again = world.client.get(f"/api/conferences/{conference['id']}", headers=alice.headers)
    assert again.status_code == 404


def test_delete_without_calendar_or_invitations_makes_no_portal_call(world, alice, control):
    conference = create(world, alice)
    assert world.client.delete(f"/api/conferences/{conference['id']}", headers=alice.headers).status_code == 200
    assert control.calls() == [] and world.rows() == []


def test_personal_yandex_account_organises_the_users_meetings(world, alice, control):
    world.connect_yandex(alice.portal_id, "maria@corp.example", subject="user:2")
    create(world, alice)
    create(world, world.user(3))
    assert [m["owner"] for m in control.meetings()] == ["maria@corp.example", "sandbox.user@yandex.ru"]
