"""Group commit of the webhook's inbox rows (models/openlines/intake.py), on SQLite and PostgreSQL: events
that arrive while another commit runs share one transaction; each request returns only after its row is
committed; a refusal or a database error in the batch is its own request's (or every request's) answer,
never a 200."""

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa

from models.forms import unflatten
from models.portal import Rejected
from tests.openlines.helpers import bot_inbox, count, lines_event, make_portal, rows


@pytest.fixture
def services(bot_app_any_db):
    return bot_app_any_db.extensions["services"]


def counting_writes(services, monkeypatch) -> list[int]:
    """Count the write transactions the database opens from now on."""
    db = services.db
    opened: list[int] = []
    original = db.write

    @contextlib.contextmanager
    def write():
        opened.append(1)
        with original() as conn:
            yield conn

    monkeypatch.setattr(db, "write", write)
    return opened


def deliver_while_held(services, payloads: list[dict]) -> list:
    """Submit the events from one thread each while the intake's turn is held, then let them go at once."""
    intake = services.openlines._intake
    results: list = [None] * len(payloads)

    def accept(index: int) -> None:
        try:
            results[index] = services.openlines.accept("ONIMBOTMESSAGEADD", payloads[index])
        except Rejected as exc:
            results[index] = exc

    threads = [threading.Thread(target=accept, args=(i,)) for i in range(len(payloads))]
    with intake._turn:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(intake._queue) < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(intake._queue) == len(payloads)
    for thread in threads:
        thread.join(10)
    return results


def test_events_waiting_for_a_commit_share_one_transaction(services, monkeypatch):
    portal = make_portal(services)
    payloads = [unflatten(lines_event(portal, chat_id=5000 + i).items()) for i in range(8)]
    opened = counting_writes(services, monkeypatch)
    results = deliver_while_held(services, payloads)
    assert len(opened) == 1
    assert [r.duplicate for r in results] == [False] * 8
    stored = rows(services, bot_inbox)
    assert sorted(r["event_key"] for r in stored) == sorted(f"ONIMBOTMESSAGEADD:{(5000 + i) * 10}" for i in range(8))
    assert {r["portal_id"] for r in stored} == {portal["id"]}


def test_a_batch_refuses_forged_events_and_acknowledges_duplicates_once(services):
    portal = make_portal(services, "p1")
    other = make_portal(services, "p2")
    good = unflatten(lines_event(portal, chat_id=7001).items())
    forged = unflatten(lines_event(portal, chat_id=7002, application_token=other["app_token"]).items())
    stale = unflatten(lines_event(portal, chat_id=7003, ts=int(time.time()) - 3600).items())
    results = deliver_while_held(services, [good, forged, dict(good), stale])
    assert isinstance(results[1], Rejected) and results[1].code == "bad_application_token"
    assert isinstance(results[3], Rejected) and results[3].code == "stale_event"
    assert sorted([results[0].duplicate, results[2].duplicate]) == [False, True]
    assert [r["event_key"] for r in rows(services, bot_inbox)] == ["ONIMBOTMESSAGEADD:70010"]


def test_a_failed_commit_fails_every_request_of_the_batch(services, monkeypatch):
    portal = make_portal(services)
    payloads = [unflatten(lines_event(portal, chat_id=8000 + i).items()) for i in range(3)]
    original = services.db.write

    @contextlib.contextmanager
    def failing_write():
        with original() as conn:
            yield conn
            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(services.db, "write", failing_write)
    errors: list = []

    def accept(payload):
        try:
            services.openlines.accept("ONIMBOTMESSAGEADD", payload)
        except sa.exc.OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=accept, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 3
    monkeypatch.setattr(services.db, "write", original)
    assert count(services, bot_inbox) == 0
    assert services.openlines._intake._queue == []


def test_the_row_is_committed_when_accept_returns(services):
    portal = make_portal(services)
    accepted = services.openlines.accept("ONIMBOTMESSAGEADD", unflatten(lines_event(portal, chat_id=9001).items()))
    assert accepted.duplicate is False
    # A fresh connection (another process would see the same) finds the row.
    engine = sa.create_engine(services.db.url)
    with engine.connect() as conn:
        keys = conn.execute(sa.select(bot_inbox.c.event_key)).scalars().all()
    engine.dispose()
    assert keys == ["ONIMBOTMESSAGEADD:90010"]
