"""Group commit of the bot webhook's inbox rows (the request path of issue 9's Performance goals).

Every request thread hands its event to the process's `InboxIntake` and blocks until the transaction holding
it has committed: a 200 is never answered before the row is durable. While one thread commits, the events
that arrive meanwhile wait; the next thread to get the turn commits all of them in ONE transaction (portal
lookups, authentication and inserts), then releases every waiting request. Under load this turns N short
write transactions, each fighting the other worker process for SQLite's single write lock (whose busy handler
sleeps 1, 2, 5, 10… ms after each miss), into a few larger ones; alone, an event commits at once.

This is the shape of the token keeper's GroupCommitter (models/refresh.py) without its thread: the turn goes
to a waiting request thread itself, so no hand-over to another thread (and no wait for the GIL there) sits
between the commit and the answer, and nothing has to be restarted after gunicorn forks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, bot_inbox, bot_settings, portals
from models.portal import INSTALLED
from models.security import matches_hash

MAX_BATCH = 256

# The events' portals with what authenticating them needs and the bot's switch, in one statement.
_SELECT_PORTALS = (
    sa.select(portals.c.member_id, portals.c.id, portals.c.status, portals.c.application_token_hash,
              bot_settings.c.enabled)
    .select_from(portals.outerjoin(bot_settings, bot_settings.c.portal_id == portals.c.id))
    .where(portals.c.member_id.in_(sa.bindparam("b_members", expanding=True)))
)
_INBOX_INSERTS: dict[str, object] = {}


def inbox_insert(conn):
    """INSERT … ON CONFLICT DO NOTHING into the inbox for this connection's database (built once)."""
    name = conn.dialect.name
    if name not in _INBOX_INSERTS:
        insert = pg_insert if name == "postgresql" else sqlite_insert
        _INBOX_INSERTS[name] = insert(bot_inbox).on_conflict_do_nothing(index_elements=["portal_id", "event_key"])
    return _INBOX_INSERTS[name]


@dataclass
class Delivery:
    """One event on its way into the inbox, and what became of it."""

    member_id: str
    application_token: str
    event: str
    key: str
    received_at: float
    fresh: bool  # its ts is within the accepted window
    payload: str  # the inbox payload with content (the bot switched on)
    routing_payload: object  # callable → the payload without content (the bot switched off)
    portal_id: int | None = None
    duplicate: bool = False
    refusal: str | None = None  # a Rejected code: nothing was written for this event
    error: BaseException | None = None
    done: bool = field(default=False, repr=False)


class InboxIntake:
    """Per-process group commit of inbox rows (see the module's docstring)."""

    def __init__(self, db: Database):
        self.db = db
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self._queue: list[Delivery] = []

    def submit(self, delivery: Delivery) -> Delivery:
        """Queue the event and return once the transaction holding it has committed (or refused it)."""
        with self._queue_lock:
            self._queue.append(delivery)
        with self._turn:
            # Whoever gets the turn commits everything queued so far, its own event included unless the
            # previous holder already committed it.
            if not delivery.done:
                with self._queue_lock:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._commit(batch)
        return delivery

    def _commit(self, batch: list[Delivery]) -> None:
        try:
            with self.db.write() as conn:
                members = sorted({d.member_id for d in batch if d.member_id})
                found = {r.member_id: r for r in conn.execute(_SELECT_PORTALS, {"b_members": members})} \
                    if members else {}
                insert = inbox_insert(conn)
                for delivery in batch:
                    portal = found.get(delivery.member_id)
                    # The order of the refusals is the one the event dispatcher always had.
                    if portal is None or not matches_hash(delivery.application_token, portal.application_token_hash):
                        delivery.refusal = "bad_application_token"
                    elif portal.status != INSTALLED:
                        delivery.refusal = "not_installed"
                    elif not delivery.fresh:
                        delivery.refusal = "stale_event"
                    if delivery.refusal:
                        continue
                    stored = delivery.payload if portal.enabled is not False else delivery.routing_payload()
                    result = conn.execute(insert, {
                        "portal_id": portal.id, "event_key": delivery.key, "event": delivery.event,
                        "status": "pending", "attempts": 0, "payload": stored,
                        "next_attempt_at": delivery.received_at, "received_at": delivery.received_at})
                    delivery.portal_id = portal.id
                    delivery.duplicate = result.rowcount != 1
        except BaseException as exc:  # noqa: BLE001 - every waiting request hears about it, none answers 200
            for delivery in batch:
                delivery.error = exc
                delivery.portal_id = None
        finally:
            for delivery in batch:
                delivery.done = True
