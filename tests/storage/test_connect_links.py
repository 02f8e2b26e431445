"""Connect links in the database, on SQLite and PostgreSQL: each step is won by exactly one request."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from app import create_app
from database import connect_links
from models.connect import ConnectRefused


@pytest.fixture
def links(storage_config):
    """The app's ConnectLinks on a migrated database (SQLite, then PostgreSQL)."""
    application = create_app(storage_config)
    yield application.extensions["services"].connect
    application.extensions["db"].dispose()


def stage_of(links, link_id: int) -> str:
    with links.db.read() as conn:
        return conn.execute(sa.select(connect_links.c.stage).where(connect_links.c.id == link_id)).scalar_one()


def test_a_link_goes_through_its_steps_once(links):
    ticket = links.issue("yandex", "global", user_name="Иван", lang="en")
    opened = links.open(ticket, "nonce-1", "yandex")
    assert (opened.scope, opened.user_name, opened.lang) == ("global", "Иван", "en")
    with pytest.raises(ConnectRefused) as reopened:
        links.open(ticket, "nonce-2", "yandex")
    assert reopened.value.code == "link_used"
    with pytest.raises(ConnectRefused) as foreign:
        links.confirm(ticket, "nonce-2", "yandex")
    assert foreign.value.code == "other_browser"
    link, state = links.confirm(ticket, "nonce-1", "yandex")
    assert stage_of(links, link.id) == "sent"
    with pytest.raises(ConnectRefused) as no_cookie:
        links.finish(state, None, "yandex")
    assert no_cookie.value.code == "other_browser"
    with pytest.raises(ConnectRefused) as wrong_provider:
        links.finish(state, "nonce-1", "amocrm")
    assert wrong_provider.value.code == "link_unknown"
    assert links.finish(state, "nonce-1", "yandex").id == link.id
    with pytest.raises(ConnectRefused) as replay:
        links.finish(state, "nonce-1", "yandex")
    assert replay.value.code == "link_used"
    assert stage_of(links, link.id) == "done"


def test_concurrent_opens_of_one_ticket_have_one_winner(links):
    ticket = links.issue("yandex", "portal")
    results: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            links.open(ticket, f"nonce-{n}", "yandex")
            results.append("won")
        except ConnectRefused as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["link_used"] * 5 + ["won"]


def test_a_bad_scope_is_refused(links):
    with pytest.raises(ConnectRefused) as refused:
        links.issue("yandex", "everyone")
    assert refused.value.code == "bad_scope"
