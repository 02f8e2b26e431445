"""The CRM binding on SQLite and PostgreSQL: stored as canonical JSON, in the list item as an object, the filter."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from database import conferences
from models.schemas import ConferenceQuery


def _insert(services, actor, name: str, binding: str | None, hours: int) -> int:
    ts = int(time.time())
    starts = ts + hours * 3600
    with services.db.write() as conn:
        return conn.execute(
            sa.insert(conferences).values(
                portal_id=actor.portal.id,
                owner_id=actor.user_id,
                name=name,
                search_name=name.casefold(),
                type="conference",
                duration_minutes=60,
                starts_at=starts,
                ends_at=starts + 3600,
                status="scheduled",
                created_at=ts,
                updated_at=ts,
                crm_binding=binding,
            )
        ).inserted_primary_key[0]


def test_crm_filter_and_list_items(stored):
    services, actor = stored
    deal = '{"entity":"deal","id":42}'
    _insert(services, actor, "up", deal, 5)
    _insert(services, actor, "past", deal, -50)
    _insert(services, actor, "other", '{"entity":"deal","id":43}', 6)
    plain_id = _insert(services, actor, "plain", None, 7)
    page = services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery(crm="deal:42"))
    assert ([i["name"] for i in page["items"]], page["total"]) == (["up", "past"], 2)
    assert {json.dumps(i["crm_binding"]) for i in page["items"]} == {'{"entity": "deal", "id": 42}'}
    past = services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery(crm="deal:42", when="past"))
    assert ([i["name"] for i in past["items"]], past["total"]) == (["past"], 1)
    upcoming = services.conferences.list(
        actor.portal.id, actor.user_id, ConferenceQuery(crm="deal:42", when="upcoming")
    )
    assert [i["name"] for i in upcoming["items"]] == ["up"]
    everything = services.conferences.list(actor.portal.id, actor.user_id, ConferenceQuery())
    assert everything["total"] == 4
    [plain] = [i for i in everything["items"] if i["id"] == plain_id]
    assert plain["crm_binding"] is None
    assert plain == services.conferences.get(actor, plain_id)
