"""The conferences API: auth, validation (422 shape), listing, isolation, idempotency, users, account, OpenAPI."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from database import conferences, telemost_restrictions

ROUTES = [
    ("GET", "/api/conferences"),
    ("POST", "/api/conferences"),
    ("GET", "/api/conferences/1"),
    ("PUT", "/api/conferences/1"),
    ("PATCH", "/api/conferences/1"),
    ("DELETE", "/api/conferences/1"),
    ("POST", "/api/conferences/1/retry"),
    ("GET", "/api/bitrix/users"),
    ("GET", "/api/telemost/account"),
]


def create(world, user, status=201, headers=None, **body):
    """POST a conference; asserts the status and returns the JSON answer."""
    body.setdefault("name", "Планёрка")
    response = world.client.post("/api/conferences", json=body, headers={**user.headers, **(headers or {})})
    assert response.status_code == status, response.json
    return response


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_session(world, method, path):
    response = world.client.open(path, method=method, json={})
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"


def test_create_answers_201_with_location_and_the_row(world, alice, control):
    response = create(world, alice, description="Еженедельная", cohosts=["Boss@Corp.example"])
    body = response.json
    assert response.headers["Location"] == f"/api/conferences/{body['id']}"
    assert body["status"] == "scheduled" and body["failed_step"] is None
    assert body["cohosts"] == ["boss@corp.example"]
    assert body["link"].startswith("https://telemost.yandex.ru/j/") and body["telemost_id"] in body["link"]
    assert body["owner_id"] == 2 and body["owner_name"] == "User 2"
    row = world.row(body["id"])
    assert row["portal_id"] == alice.portal_id and row["telemost_id"] == body["telemost_id"]
    assert json.loads(row["cohosts"]) == ["boss@corp.example"]
    assert [m["id"] for m in control.meetings()] == [body["telemost_id"]]
    assert world.client.get(response.headers["Location"], headers=alice.headers).json == body


VALID = {"name": "X", "type": "broadcast", "start_date": "2030-01-10", "start_time": "10:00"}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": None}, "name", "string_type"),
        ({"name": "   "}, "name", "string_too_short"),
        ({"name": "x" * 256}, "name", "string_too_long"),
        ({"type": "webinar"}, "type", "literal_error"),
        ({"description": "x" * 5001}, "description", "string_too_long"),
        ({"start_date": "10.01.2030"}, "start_date", "invalid_date"),
        ({"start_date": "2030-02-30"}, "start_date", "date_from_datetime_parsing"),
        ({"start_date": "0001-01-01"}, "start_date", "date_out_of_range"),
        ({"start_time": "10:00:00"}, "start_time", "invalid_time"),
        ({"start_time": "25:00"}, "start_time", "time_parsing"),
        ({"duration_minutes": 4}, "duration_minutes", "greater_than_equal"),
        ({"duration_minutes": 1441}, "duration_minutes", "less_than_equal"),
        ({"timezone": "Mars/Olympus"}, "timezone", "invalid_timezone"),
        ({"cohosts": ["not-an-address"]}, "cohosts", "invalid_email"),
        ({"cohosts": [f"u{i}@x.ru" for i in range(31)]}, "cohosts", "too_long"),
        ({"invitees": [0]}, "invitees", "greater_than"),
        ({"invitees": ["abc"]}, "invitees", "int_parsing"),
        ({"invitees": list(range(1, 102))}, "invitees", "too_long"),
        ({"viewers": list(range(1, 202))}, "viewers", "too_long"),
        ({"live_stream_title": "x" * 1025}, "live_stream_title", "string_too_long"),
        ({"live_stream_description": "x" * 2049}, "live_stream_description", "string_too_long"),
        ({"waiting_room_level": "EVERYONE"}, "waiting_room_level", "literal_error"),
        ({"create_calendar_event": "maybe"}, "create_calendar_event", "bool_parsing"),
        ({"description": "a\x00b"}, "description", "invalid_character"),
    ],
)
def test_field_validation(world, alice, control, body, field, reason):
    response = create(world, alice, 422, **{**VALID, **body})
    assert response.json == {
        "error": "validation_error",
        "message": "Some fields are not filled in correctly.",
        "fields": {field: reason},
    }
    assert world.rows() == [] and control.meetings() == []


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"type": "conference", "viewers": [3]}, "viewers", "broadcast_only"),
        ({"type": "conference", "live_stream_title": "T"}, "live_stream_title", "broadcast_only"),
        ({"start_date": None}, "start_date", "requires_start"),
        ({"start_time": None, "create_calendar_event": True}, "create_calendar_event", "requires_start"),
        ({"invite_users": True}, "invitees", "required_for_invite"),
    ],
)
def test_rules_across_fields(world, alice, body, field, reason):
    response = create(world, alice, 422, **{**VALID, **body})
    assert response.json["fields"] == {field: reason}


def test_missing_name_and_non_object_bodies(world, alice):
    missing = world.client.post("/api/conferences", json={}, headers=alice.headers)
    assert missing.status_code == 422 and missing.json["fields"] == {"name": "missing"}
    array = world.client.post("/api/conferences", json=[1], headers=alice.headers)
    assert array.status_code == 400 and array.json["error"] == "bad_request"
    broken = world.client.post("/api/conferences", data="{", content_type="application/json", headers=alice.headers)
    assert broken.status_code == 400


def test_patch_checks_the_rules_on_the_merged_result(world, alice):
    conference = create(world, alice).json
    response = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"create_calendar_event": True}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.json["fields"] == {"create_calendar_event": "requires_start"}
    bad = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"duration_minutes": 0}, headers=alice.headers
    )
    assert bad.status_code == 422 and bad.json["fields"] == {"duration_minutes": "greater_than_equal"}
    assert world.row(conference["id"])["create_calendar_event"] is False


def test_type_cannot_change(world, alice):
    conference = create(world, alice).json
    response = world.client.patch(
        f"/api/conferences/{conference['id']}", json={"type": "broadcast"}, headers=alice.headers
    )
    assert response.status_code == 422 and response.json["fields"] == {"type": "cannot_change"}


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("per_page=101", "per_page", "less_than_equal"),
        ("per_page=0", "per_page", "greater_than_equal"),
        ("page=0", "page", "greater_than_equal"),
        ("page=x", "page", "int_parsing"),
        ("type=webinar", "type", "literal_error"),
        ("status=done", "status", "literal_error"),
        ("when=tomorrow", "when", "literal_error"),
        ("q=%00", "q", "invalid_character"),
    ],
)
def test_list_query_validation(world, alice, query, field, reason):
    response = world.client.get(f"/api/conferences?{query}", headers=alice.headers)
    assert response.status_code == 422 and response.json["fields"] == {field: reason}


def _seed(world, user, rows):
    """Insert conference rows directly (listing does not care how they were made)."""
    ts = 1_900_000_000
    with world.services.db.write() as conn:
        for i, (name, kind, status, starts) in enumerate(rows):
            conn.execute(
                sa.insert(conferences).values(
                    portal_id=user.portal_id,
                    owner_id=user.user_id,
                    name=name,
                    search_name=name.casefold(),
                    type=kind,
                    duration_minutes=60,
                    starts_at=starts,
                    ends_at=starts + 3600,
                    status=status,
                    telemost_id=str(10**11 + i),
                    link=f"https://telemost.yandex.ru/j/{10**11 + i}",
                    created_at=ts,
                    updated_at=ts,
                )
            )


def test_list_orders_filters_searches_and_pages(world, alice, monkeypatch):
    future, past = 4_000_000_000, 1_000_000_000
    _seed(
        world,
        alice,
        [
            ("Past old", "conference", "scheduled", past),
            ("Past new", "broadcast", "scheduled", past + 10_000),
            ("Soon", "conference", "scheduled", future),
            ("Later", "broadcast", "incomplete", future + 10_000),
            ("ПЛАНЁРКА отдела", "conference", "scheduled", future + 20_000),
            ("hidden", "conference", "creating", future),
        ],
    )

    def names(query):
        response = world.client.get(f"/api/conferences?{query}", headers=alice.headers)
        assert response.status_code == 200
        return [item["name"] for item in response.json["items"]], response.json

    assert names("when=upcoming")[0] == ["Soon", "Later", "ПЛАНЁРКА отдела"]
    assert names("when=past")[0] == ["Past new", "Past old"]
    assert names("")[0] == ["Soon", "Later", "ПЛАНЁРКА отдела", "Past new", "Past old"]
    assert names("type=broadcast")[0] == ["Later", "Past new"]
    assert names("status=incomplete")[0] == ["Later"]
    assert names("q=планёрка")[0] == ["ПЛАНЁРКА отдела"]
    assert names("q=%25")[0] == []
    items, page = names("per_page=2&page=2")
    assert items == ["ПЛАНЁРКА отдела", "Past new"]
    assert (page["page"], page["per_page"], page["total"]) == (2, 2, 5)
    assert names("per_page=2&page=9")[1]["items"] == []
    assert set(page["items"][0]) >= {
        "id",
        "link",
        "watch_url",
        "telemost_id",
        "calendar_event_id",
        "status",
        "failed_step",
        "owner_id",
        "owner_name",
        "created_at",
        "updated_at",
    }


def test_other_users_and_portals_see_404(world, alice):
    conference = create(world, alice).json
    bob = world.user(3)
    stranger = world.user(2, portal="portal2")
    for intruder in (bob, stranger):
        base = f"/api/conferences/{conference['id']}"
        calls = [
            ("GET", base, None),
            ("PUT", base, {"name": "Mine"}),
            ("PATCH", base, {"name": "Mine"}),
            ("DELETE", base, None),
            ("POST", f"{base}/retry", None),
        ]
        for method, path, body in calls:
            response = world.client.open(path, method=method, json=body, headers=intruder.headers)
            assert response.status_code == 404, (method, intruder)
            assert response.json["error"] == "conference_not_found"
        assert world.client.get("/api/conferences", headers=intruder.headers).json["total"] == 0
    assert world.row(conference["id"])["name"] == "Планёрка"


def test_idempotent_create_returns_the_first_result(world, alice, control):
    headers = {"Idempotency-Key": "click-1"}
    first = create(world, alice, headers=headers, invitees=[3], invite_users=True)
    again = create(world, alice, headers=headers, invitees=[3], invite_users=True)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(control.meetings()) == 1 and len(world.rows()) == 1
    assert len([n for n in control.state()["notifications"] if n["user_id"] == 3]) == 1
    other = create(world, alice, 409, headers=headers, name="Другое")
    assert other.json["error"] == "idempotency_key_reused"
    # The key is the user's own: another user may use the same one.
    create(world, world.user(3), headers=headers)
    assert len(control.meetings()) == 2


@pytest.mark.parametrize("key", ["", "x" * 129, "ключ"])
def test_bad_idempotency_keys(world, alice, key):
    response = create(world, alice, 400, headers={"Idempotency-Key": key})
    assert response.json["error"] == "bad_idempotency_key"
    assert world.rows() == []


def test_failed_telemost_call_frees_the_idempotency_key(world, alice, control):
    control.configure(telemost_live_stream_paid=True)
    headers = {"Idempotency-Key": "k2"}
    create(world, alice, 402, headers=headers, type="broadcast")
    assert world.rows() == []
    control.configure(telemost_live_stream_paid=False)
    created = create(world, alice, headers=headers, type="broadcast")
    assert created.json["watch_url"].startswith("https://telemost.yandex.ru/live/")


def test_portal_users_are_active_employees_paged_and_cached(world, alice, control):
    first = world.client.get("/api/bitrix/users", headers=alice.headers)
    assert first.status_code == 200
    assert (first.json["page"], first.json["per_page"], first.json["total"]) == (1, 50, 59)
    assert len(first.json["items"]) == 50
    assert 7 not in [u["id"] for u in first.json["items"]]  # the dismissed employee
    second = world.client.get("/api/bitrix/users?page=2", headers=alice.headers).json
    assert len(second["items"]) == 9
    found = world.client.get("/api/bitrix/users?q=Смирн", headers=alice.headers).json
    assert [(u["id"], u["name"], u["position"]) for u in found["items"]] == [
        (2, "Мария Смирнова", "Менеджер по продажам")
    ]
    control.clear_calls()
    world.client.get("/api/bitrix/users?q=Смирн", headers=alice.headers)
    assert control.calls() == []
    bad = world.client.get("/api/bitrix/users?page=0", headers=alice.headers)
    assert bad.status_code == 422 and bad.json["fields"] == {"page": "greater_than_equal"}


def test_account_says_whose_yandex_account_organises(world, control):
    user = world.user(2)
    account = world.client.get("/api/telemost/account", headers=user.headers).json
    assert account == {
        "connected": True,
        "personal": False,
        "account": "sandbox.user@yandex.ru",
        "restricted": False,
        "needs_reconnect": False,
    }
    world.connect_yandex(user.portal_id, "maria.own", subject="user:2")
    own = world.client.get("/api/telemost/account", headers=user.headers).json
    assert own["personal"] is True and own["account"] == "maria.own@yandex.ru"
    other = world.client.get("/api/telemost/account", headers=world.user(3).headers).json
    assert other["personal"] is False


def test_no_yandex_account_is_a_clear_409(world, control):
    world.install("portal2", yandex_login=None)
    user = world.user(2, portal="portal2")
    assert world.client.get("/api/telemost/account", headers=user.headers).json["connected"] is False
    response = create(world, user, 409)
    assert response.json["error"] == "yandex_not_connected"
    assert world.rows() == [] and control.meetings() == []


def test_restricted_account_is_remembered(world, alice, control):
    control.configure(telemost_personal_restricted=True)
    response = create(world, alice, 409)
    assert response.json["error"] == "telemost_restricted_to_organizations"
    assert response.json["request_id"]
    with world.services.db.read() as conn:
        assert len(conn.execute(sa.select(telemost_restrictions)).all()) == 1
    assert world.client.get("/api/telemost/account", headers=alice.headers).json["restricted"] is True
    control.configure(telemost_personal_restricted=False)
    create(world, alice)
    with world.services.db.read() as conn:
        assert conn.execute(sa.select(telemost_restrictions)).all() == []


def test_openapi_document_is_generated_from_the_models(world):
    response = world.client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.json
    assert doc["openapi"] == "3.1.0"
    # The whole API is documented (tests/openapi checks it against the routes); the conferences part:
    assert {
        "/api/conferences",
        "/api/conferences/{conference_id}",
        "/api/conferences/{conference_id}/retry",
        "/api/bitrix/users",
        "/api/crm/context",
        "/api/telemost/account",
    } <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert schemas["CrmBinding"]["properties"]["entity"]["enum"] == ["deal", "contact", "company", "lead"]
    assert schemas["ConferenceCreate"]["required"] == ["name"]
    assert set(schemas["ValidationFailure"]["properties"]) == {"error", "message", "fields"}
    assert schemas["Conference"]["properties"]["waiting_room_level"]["enum"] == ["PUBLIC", "ORGANIZATION", "ADMINS"]
    post = doc["paths"]["/api/conferences"]["post"]
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Conference"
    }
    assert post["parameters"][0]["name"] == "Idempotency-Key"


def test_answers_match_the_documented_models(world, alice, control):
    from models import schemas

    conference = create(
        world,
        alice,
        type="broadcast",
        invite_users=True,
        invitees=[3],
        viewers=[4],
        create_calendar_event=True,
        start_date="2030-01-10",
        start_time="10:00",
    ).json
    assert schemas.Conference.model_validate(conference, strict=True).model_dump() == conference
    page = world.client.get("/api/conferences", headers=alice.headers).json
    assert schemas.ConferencePage.model_validate(page, strict=True).model_dump() == page
    users = world.client.get("/api/bitrix/users", headers=alice.headers).json
    assert schemas.PortalUserPage.model_validate(users, strict=True).model_dump() == users
    account = world.client.get("/api/telemost/account", headers=alice.headers).json
    assert schemas.TelemostAccount.model_validate(account, strict=True).model_dump() == account
    deleted = world.client.delete(f"/api/conferences/{conference['id']}", headers=alice.headers).json
    assert schemas.DeleteResult.model_validate(deleted, strict=True).model_dump() == deleted
