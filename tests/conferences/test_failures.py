"""Partial failures and their retry, and every Telemost error, against the sandbox."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from database import credentials
from models.bitrix24 import PortalClient
from models.vault import TokenSet

SLOT = {"start_date": "2030-03-04", "start_time": "15:30", "timezone": "Europe/Moscow"}


def create(world, user, status=201, **body):
    """POST a conference and return the JSON answer."""
    body.setdefault("name", "Планёрка")
    response = world.client.post("/api/conferences", json=body, headers=user.headers)
    assert response.status_code == status, response.json
    return response.json


def portal_down(control, count=1):
    """The next `count` requests to the test's portal fail with a 500."""
    control.fault(server="portal", mode="5xx", value=500, count=count, portal=control.portal("portal1")["name"])


def retry(world, user, conference_id, status=200):
    """POST …/retry."""
    response = world.client.post(f"/api/conferences/{conference_id}/retry", headers=user.headers)
    assert response.status_code == status, response.json
    return response.json


def test_calendar_failure_keeps_the_meeting_and_retry_finishes(world, alice, control):
    portal_down(control)
    conference = create(world, alice, create_calendar_event=True, invite_users=True, invitees=[3, 4], **SLOT)
    assert (conference["status"], conference["failed_step"]) == ("incomplete", "calendar")
    assert conference["failure_code"] == "bitrix_unavailable" and conference["calendar_event_id"] is None
    assert len(control.meetings()) == 1 and control.state()["calendar_events"] == []
    row = world.row(conference["id"])
    assert json.loads(row["pending_notifications"]) == [
        {"user_id": 3, "kind": "invited"},
        {"user_id": 4, "kind": "invited"},
    ]
    done = retry(world, alice, conference["id"])
    assert (done["status"], done["failed_step"], done["failure_code"]) == ("scheduled", None, None)
    [event] = control.state()["calendar_events"]
    assert done["calendar_event_id"] == int(event["ID"])
    assert sorted(n["user_id"] for n in control.state()["notifications"]) == [3, 4]
    assert world.row(conference["id"])["pending_notifications"] == "[]"
    assert len(control.meetings()) == 1


def test_notification_failure_and_retry(world, alice, control):
    portal_down(control)
    conference = create(world, alice, invite_users=True, invitees=[3])
    assert conference["failed_step"] == "notifications" and conference["status"] == "incomplete"
    listed = world.client.get("/api/conferences?status=incomplete", headers=alice.headers).json
    assert [c["id"] for c in listed["items"]] == [conference["id"]]
    done = retry(world, alice, conference["id"])
    assert done["failed_step"] is None
    assert [n["user_id"] for n in control.state()["notifications"]] == [3]
    # Nothing left to do: a second retry changes nothing and calls nobody.
    control.clear_calls()
    assert retry(world, alice, conference["id"]) == done
    assert control.calls() == []


def test_failed_calendar_command_in_a_good_batch(world, alice, control, monkeypatch):
    real = PortalClient.batch

    def calendar_refused(self, commands, halt=False):
        answer = real(self, {k: v for k, v in commands.items() if k != "calendar"}, halt)
        if "calendar" in commands:
            answer["result_error"] = {"calendar": {"error": "", "error_description": "Access denied"}}
        return answer

    monkeypatch.setattr(PortalClient, "batch", calendar_refused)
    conference = create(world, alice, create_calendar_event=True, invite_users=True, invitees=[3], **SLOT)
    assert (conference["failed_step"], conference["failure_code"]) == ("calendar", "calendar_ERROR")
    assert world.row(conference["id"])["pending_notifications"] == "[]"  # the invitation did go out
    monkeypatch.setattr(PortalClient, "batch", real)
    control.clear_calls()
    done = retry(world, alice, conference["id"])
    assert done["failed_step"] is None and done["calendar_event_id"] is not None
    subcalls = [c["method"] for c in control.calls() if c["batch"]]
    assert subcalls == ["calendar.event.add"]
    assert len(control.state()["notifications"]) == 1


def test_update_calendar_failure_and_retry(world, alice, control):
    conference = create(world, alice, create_calendar_event=True, **SLOT)
    portal_down(control)
    changed = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"start_time": "18:00"}, headers=alice.headers
    ).json
    assert changed["failed_step"] == "calendar" and changed["start_time"] == "18:00"
    assert control.state()["calendar_events"][0]["DATE_FROM"] == "04.03.2030 15:30:00"
    retry(world, alice, conference["id"])
    assert control.state()["calendar_events"][0]["DATE_FROM"] == "04.03.2030 18:00:00"
    assert world.row(conference["id"])["failed_step"] is None


def test_delete_failure_keeps_a_cancelled_row_until_retry(world, alice, control):
    control.configure(telemost_delete="204")
    conference = create(world, alice, create_calendar_event=True, invite_users=True, invitees=[3], **SLOT)
    portal_down(control)
    response = world.client.delete(f"/api/conferences/{conference['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json == {
        "id": conference["id"],
        "deleted": False,
        "telemost": "deleted",
        "failed_step": "calendar_delete",
    }
    row = world.row(conference["id"])
    assert (row["status"], row["telemost_id"]) == ("cancelled", None)
    assert control.meetings()[0]["deleted"] is True
    assert len(control.state()["calendar_events"]) == 1
    edit = world.client.patch(f"/api/conferences/{conference['id']}", json={"name": "x"}, headers=alice.headers)
    assert edit.status_code == 409 and edit.json["error"] == "conference_cancelled"
    finished = retry(world, alice, conference["id"])
    assert finished == {"id": conference["id"], "deleted": True, "telemost": "deleted", "failed_step": None}
    assert control.state()["calendar_events"] == [] and world.rows() == []
    assert "отменена" in control.state()["notifications"][0]["message"]


@pytest.mark.parametrize(
    ("knobs", "body", "status", "code"),
    [
        ({"telemost_personal_restricted": True}, {}, 409, "telemost_restricted_to_organizations"),
        ({"telemost_live_stream_paid": True}, {"type": "broadcast"}, 402, "telemost_live_stream_payment_required"),
        ({"telemost_forbidden": True}, {}, 409, "yandex_reconnect_required"),
        ({}, {"cohosts": ["a@corp.example", "x@unknown.example"]}, 400, "telemost_unknown_users"),
        ({"telemost_rate_burst": 0}, {}, 429, "telemost_rate_limited"),
    ],
)
def test_telemost_errors_leave_nothing_behind(world, alice, control, knobs, body, status, code):
    world.services.telemost.retries = 1
    if knobs:
        control.configure(**knobs)
    answer = create(world, alice, status, create_calendar_event=True, invite_users=True, invitees=[3], **SLOT, **body)
    assert answer["error"] == code and answer["message"]
    assert answer["request_id"]  # Yandex-Cloud-Request-ID, for support
    assert world.rows() == [] and control.meetings() == []
    assert control.state()["calendar_events"] == [] and control.state()["notifications"] == []
    if code == "telemost_unknown_users":
        assert answer["emails"] == ["x@unknown.example"]
        assert answer["message"] == "These addresses are not Yandex accounts: x@unknown.example"


def test_telemost_down_is_retried_then_503(world, alice, control):
    world.services.telemost.backoff = 0.01
    control.fault(server="telemost", mode="5xx", value=502, count=2)
    create(world, alice)
    control.fault(server="telemost", mode="5xx", value=503, count=10)
    answer = create(world, alice, 503)
    assert answer["error"] == "telemost_unavailable"
    assert len(control.meetings()) == 1 and len(world.rows()) == 1
    log = control("GET", "/telemost/requests")
    assert all(entry["x_request_id"] and entry["authorization_scheme"] == "OAuth" for entry in log)


def test_telemost_failure_on_update_and_delete_changes_nothing(world, alice, control):
    conference = create(world, alice, create_calendar_event=True, waiting_room_level="PUBLIC", **SLOT)
    control.configure(telemost_forbidden=True)
    changed = world.client.patch(
        f"/api/conferences/{conference['id']}",
        json={"waiting_room_level": "ADMINS", "start_time": "19:00"},
        headers=alice.headers,
    )
    assert changed.status_code == 409 and changed.json["error"] == "yandex_reconnect_required"
    row = world.row(conference["id"])
    assert (row["waiting_room_level"], row["start_time"]) == ("PUBLIC", "15:30")
    assert control.state()["calendar_events"][0]["DATE_FROM"] == "04.03.2030 15:30:00"
    control.configure(telemost_forbidden=False, telemost_delete="204")
    world.services.telemost.retries = 0
    control.fault(server="telemost", mode="5xx", value=500, count=1)
    deleted = world.client.delete(f"/api/conferences/{conference['id']}", headers=alice.headers)
    assert deleted.status_code == 503 and deleted.json["error"] == "telemost_unavailable"
    assert world.row(conference["id"])["status"] == "scheduled"
    assert len(control.state()["calendar_events"]) == 1


def test_meeting_gone_upstream_is_telemost_not_found(world, alice, control):
    conference = create(world, alice)
    control.configure(telemost_delete="204")
    world.services.telemost.request(
        world.services.integrations.organizer_token(alice.portal_id, 2).access_token,
        "DELETE",
        f"/conferences/{conference['telemost_id']}",
    )
    response = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"waiting_room_level": "ADMINS"}, headers=alice.headers
    )
    assert response.status_code == 404 and response.json["error"] == "telemost_not_found"


def test_rejected_yandex_token_is_refreshed_once_through_the_keeper(world, alice, control):
    cred = world.services.vault.for_portal(alice.portal_id, "yandex")[0]
    ts = int(time.time())
    # Our clock says the token is good; Telemost does not know it (revoked, rotated by a peer …).
    world.services.vault.store(
        "yandex",
        cred.account,
        cred.subject,
        TokenSet("not-a-token", cred.refresh_token, ts + 10**6, ts + 10**7),
        portal_id=alice.portal_id,
    )
    create(world, alice)
    with world.services.db.read() as conn:
        version = conn.execute(sa.select(credentials.c.version).where(credentials.c.id == cred.id)).scalar_one()
    assert version == 3  # the forced pair, then the refreshed one
    assert world.services.vault.get(cred.id).access_token != "not-a-token"
    assert len(control.meetings()) == 1


def test_a_row_that_cannot_be_written_takes_the_meeting_back(world, alice, control, monkeypatch):
    from models import conference as conference_module
    from models.conference import Actor
    from models.schemas import ConferenceCreate

    real = conference_module._stored_fields
    monkeypatch.setattr(conference_module, "_stored_fields", lambda *a: {**real(*a), "name": None})
    control.configure(telemost_delete="204")
    actor = Actor(world.services.portals.get(alice.portal_id), 2, "User 2")
    with pytest.raises(sa.exc.IntegrityError):
        world.services.conferences.create(actor, ConferenceCreate(name="X"), lambda key, **p: key)
    assert world.rows() == []
    assert [m["deleted"] for m in control.meetings()] == [True]


def test_switching_off_a_failed_calendar_settles_the_conference(world, alice, control):
    portal_down(control)
    conference = create(world, alice, create_calendar_event=True, **SLOT)
    assert conference["failed_step"] == "calendar"
    settled = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"create_calendar_event": False}, headers=alice.headers
    ).json
    assert (settled["failed_step"], settled["status"]) == (None, "scheduled")
    assert control.state()["calendar_events"] == []


def test_calendar_is_never_made_with_someone_elses_token(world, control):
    world.install("portal1")
    user = world.user(2, own_pair=False)
    conference = create(world, user, create_calendar_event=True, invite_users=True, invitees=[3], **SLOT)
    assert (conference["failed_step"], conference["failure_code"]) == ("calendar", "bitrix_user_token_missing")
    assert control.state()["calendar_events"] == []
    [note] = control.state()["notifications"]
    assert note["user_id"] == 3 and note["from_user_id"] == 1  # the invitation went with the portal's token
    world.user(2)  # the user opens the app again: their own pair is stored
    done = retry(world, user, conference["id"])
    assert done["failed_step"] is None
    [event] = control.state()["calendar_events"]
    assert event["MEETING_HOST"] == "2"
