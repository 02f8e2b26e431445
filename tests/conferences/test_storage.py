"""Conference storage on SQLite and PostgreSQL: the migration, the history query, idempotency reservations."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from database import conference_totals, conferences, telemost_restrictions
from models.conference import _Prepared
from models.errors import ServiceError
from models.schemas import Conference, ConferenceCreate, ConferenceQuery


def _rows(services, actor, specs):
    ts = int(time.time())
    with services.db.write() as conn:
        for name, offset_hours, status in specs:
            starts = ts + offset_hours * 3600
            conn.execute(
                sa.insert(conferences).values(
                    portal_id=actor.portal.id,
                    owner_id=actor.user_id,
                    name=name,
                    search_name=name.casefold(),
                    type="conference",
                    duration_minutes=60,
                    starts_at=starts,
                    ends_at=starts + 3600,
                    status=status,
                    created_at=ts,
                    updated_at=ts,
                )
            )


def test_history_query_and_search(stored):
    services, actor = stored
    _rows(
        services,
        actor,
        [
            ("A past", -50, "scheduled"),
            ("B past", -10, "scheduled"),
            ("C now", 0, "scheduled"),
            ("D soon", 5, "incomplete"),
            ("100%_Done", 9, "scheduled"),
            ("hidden", 1, "creating"),
        ],
    )

    def names(**query):
        page = services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery(**query))
        return [i["name"] for i in page["items"]], page["total"]

    assert names() == (["C now", "D soon", "100%_Done", "B past", "A past"], 5)
    assert names(when="upcoming") == (["C now", "D soon", "100%_Done"], 3)
    assert names(when="past", per_page=1, page=2) == (["A past"], 2)
    assert names(per_page=2, page=2) == (["100%_Done", "B past"], 5)
    assert names(q="%_") == (["100%_Done"], 1)
    assert names(status="incomplete") == (["D soon"], 1)
    assert services.conferences.list(actor.portal.id, 99, ConferenceQuery())["total"] == 0


def test_idempotency_reservation(stored):
    services, actor = stored
    data = ConferenceCreate(name="X")
    digest = "d" * 64
    first, reserved = services.conferences._reserve(actor, "key-1", digest)
    assert first is None and reserved
    with services.db.write() as conn:
        conn.execute(
            sa.update(conferences)
            .where(conferences.c.id == reserved)
            .values(status="scheduled", name="X", search_name="x", telemost_id="123456789012")
        )
    replay, again = services.conferences._reserve(actor, "key-1", digest)
    assert again is None and replay["id"] == reserved and replay["name"] == data.name
    with pytest.raises(ServiceError) as reused:
        services.conferences._reserve(actor, "key-1", "e" * 64)
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 409


def test_restriction_flag_follows_the_credential(stored):
    services, actor = stored
    from models.telemost import OrganizerToken
    from models.vault import TokenSet

    ts = int(time.time())
    cred_id = services.vault.store(
        "yandex", "1130000000000001", "account", TokenSet("a", "r", ts + 10**6, ts + 10**7), portal_id=actor.portal.id
    )
    organizer = services.integrations.organizer_token(actor.portal.id, actor.user_id)
    assert (organizer.credential_id, organizer.restricted, organizer.personal) == (cred_id, False, False)
    services.conferences._mark_restricted(organizer)
    services.conferences._mark_restricted(organizer)  # remembered once
    assert services.integrations.organizer_token(actor.portal.id, actor.user_id).restricted is True
    with services.db.read() as conn:
        assert len(conn.execute(sa.select(telemost_restrictions)).all()) == 1
    services.conferences._clear_restricted(OrganizerToken("a", cred_id, "x", False, restricted=True))
    assert services.integrations.organizer_token(actor.portal.id, actor.user_id).restricted is False


def test_list_items_are_the_rows_as_get_answers_them(stored):
    # The list's items are written by the database (json_object / json_build_object): they must be exactly
    # what the one-row read gives, on both databases, for every kind of value.
    services, actor = stored
    ts = int(time.time())
    with services.db.write() as conn:
        ids = [
            conn.execute(
                sa.insert(conferences).values(
                    portal_id=actor.portal.id,
                    owner_id=actor.user_id,
                    owner_name=None,
                    name='Планёрка "A" \\ 😀',
                    search_name="планёрка",
                    type="broadcast",
                    description="line 1\nline 2\t\x01",
                    start_date="2030-03-04",
                    start_time="10:00",
                    duration_minutes=90,
                    timezone="Europe/Moscow",
                    starts_at=ts + hours * 3600,
                    ends_at=ts + hours * 3600 + 5400,
                    cohosts='["a@corp.example", "b@corp.example"]',
                    create_calendar_event=flag,
                    invite_users=not flag,
                    invitees="[3, 4]",
                    viewers="[]",
                    live_stream_title="Трансляция",
                    waiting_room_level="ADMINS",
                    telemost_id="123",
                    link="https://t.example/j/1",
                    calendar_event_id=77 if flag else None,
                    status="incomplete",
                    failed_step="notifications",
                    failure_code=None,
                    created_at=ts,
                    updated_at=ts + 1,
                )
            ).inserted_primary_key[0]
            for hours, flag in ((5, True), (-5, False))
        ]
    page = services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery())
    # Compared as JSON text: 1 == True in Python, but not in the answer.
    expected = [services.conferences.get(actor, conference_id) for conference_id in ids]
    assert json.dumps(page["items"], ensure_ascii=False) == json.dumps(expected, ensure_ascii=False)
    assert [Conference.model_validate(item).id for item in page["items"]] == ids
    assert (page["page"], page["per_page"], page["total"]) == (1, 20, 2)


def test_a_failing_list_statement_is_a_sqlalchemy_error(stored):
    # The list runs prepared statements on a driver cursor: a driver error must still come out as
    # SQLAlchemy's (the app's handlers and the readiness probe know those), with no parameters in it.
    services, _actor = stored
    broken = _Prepared(
        sa.select(sa.literal_column("no_such_column")).where(sa.bindparam("b_secret") == 1), services.db.engine.dialect
    )
    with pytest.raises(sa.exc.DBAPIError) as caught, services.db.read_cursor() as cursor:
        broken.rows(cursor, {"b_secret": "token-value"})
    assert "token-value" not in str(caught.value)


@pytest.mark.parametrize("when", ["all", "upcoming", "past"])
def test_every_page_and_total_match_the_rows(stored, when):
    # The list counts only what a page cannot tell (a short upcoming part ends the upcoming run; a page
    # past the upcoming ones counts them): every page size and page, across the upcoming/past boundary and
    # beyond the last page, must give the rows in order and the exact total.
    services, actor = stored
    upcoming = [(f"up{n}", 2 + n, "scheduled") for n in range(7)]
    past = [(f"past{n}", -2 - n, "incomplete") for n in range(5)]
    _rows(services, actor, [*reversed(upcoming), *past, ("reserved", 3, "creating")])
    expected = {
        "all": [name for name, _h, _s in upcoming + past],
        "upcoming": [name for name, _h, _s in upcoming],
        "past": [name for name, _h, _s in past],
    }[when]
    for per_page in (1, 3, 5, 7, 12, 13):
        for page in range(1, len(expected) // per_page + 3):
            got = services.conferences.list(
                actor.portal.id, actor.user_id, ConferenceQuery(when=when, per_page=per_page, page=page)
            )
            start = (page - 1) * per_page
            assert ([i["name"] for i in got["items"]], got["total"]) == (
                expected[start : start + per_page],
                len(expected),
            ), (per_page, page)


def test_total_follows_every_create_and_delete(stored):
    # The total is exact right after each write: the database keeps it per (portal, owner) in the write's
    # own transaction (triggers of migration 0006), reservations ("creating") not counted.
    services, actor = stored

    def total(**query):
        return services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery(per_page=2, **query))["total"]

    _rows(services, actor, [("a", 5, "scheduled"), ("b", -5, "scheduled"), ("c", 7, "creating")])
    assert (total(), total(when="upcoming"), total(when="past")) == (2, 1, 1)
    _rows(services, actor, [("d", 9, "scheduled"), ("e", 11, "scheduled")])
    assert (total(), total(when="upcoming"), total(when="past")) == (4, 3, 1)
    with services.db.write() as conn:
        conn.execute(sa.update(conferences).where(conferences.c.name == "c").values(status="scheduled"))
        conn.execute(sa.delete(conferences).where(conferences.c.name.in_(["a", "b"])))
    with services.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(conferences)).scalar() == 3
        kept = conn.execute(sa.select(conference_totals.c.owner_id, conference_totals.c.total)).all()
    assert kept == [(actor.user_id, 3)]
    assert (total(), total(when="upcoming"), total(when="past")) == (3, 3, 0)
    assert total(type="conference") == 3  # a filtered list counts the rows themselves


def test_list_items_follow_updates_of_the_row(stored):
    # Each item is written by the database with its row (a generated column on SQLite, a trigger on
    # PostgreSQL): after an update of any listed field the list must still answer what get() answers.
    services, actor = stored
    _rows(services, actor, [("before", 5, "scheduled")])
    with services.db.write() as conn:
        conn.execute(
            sa.update(conferences)
            .where(conferences.c.name == "before")
            .values(
                name="after «1»",
                status="incomplete",
                failed_step="calendar",
                cohosts='["x@corp.example"]',
                invitees="[7]",
                create_calendar_event=True,
                calendar_event_id=12,
                link="https://t.example/j/2",
                updated_at=conferences.c.updated_at + 5,
            )
        )
        stored_item = conn.execute(sa.select(conferences.c.id, conferences.c.list_item)).one()
    [item] = services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery())["items"]
    expected = services.conferences.get(actor, stored_item.id)
    assert json.dumps(item, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False)
    assert (item["name"], item["cohosts"], item["create_calendar_event"]) == ("after «1»", ["x@corp.example"], True)
    assert json.loads(stored_item.list_item)["failed_step"] == "calendar"
