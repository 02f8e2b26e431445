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

import contextlib
import fcntl
import os
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, bot_inbox, bot_settings, portals
from models.portal import INSTALLED
from models.security import matches_hash

MAX_BATCH = 256

# The event's portal with what authenticating it needs and the bot's switch, in one statement.
_SELECT_PORTAL = (
    sa.select(portals.c.id, portals.c.status, portals.c.application_token_hash, bot_settings.c.enabled)
    .select_from(portals.outerjoin(bot_settings, bot_settings.c.portal_id == portals.c.id))
    .where(portals.c.member_id == sa.bindparam("b_member"))
)
_INBOX_COLUMNS = ("portal_id", "event_key", "event", "status", "attempts", "payload", "next_attempt_at", "received_at")
# psycopg reports rowcount -1 for an INSERT that SQLAlchemy gives a RETURNING clause: whether a row was written
# is whether one came back. Built once (building a statement costs more than running it).
_PG_INBOX_INSERT = (
    pg_insert(bot_inbox).on_conflict_do_nothing(index_elements=["portal_id", "event_key"]).returning(bot_inbox.c.id)
)


class PortalAuth(NamedTuple):
    """What the intake needs of an event's portal."""

    id: int
    status: str
    application_token_hash: str | None
    enabled: bool | None


class _SqliteStatements:
    """The intake's two statements compiled once for SQLite's driver and run on its cursor: SQLAlchemy's
    per-call work cost more than the statements themselves on the webhook's path (measured with pyinstrument).
    The SQL is SQLAlchemy's own compilation of the same statements, not written by hand."""

    def __init__(self, dialect):
        select = _SELECT_PORTAL.compile(dialect=dialect)
        insert = (
            sqlite_insert(bot_inbox)
            .values({c: sa.bindparam(c) for c in _INBOX_COLUMNS})
            .on_conflict_do_nothing(index_elements=["portal_id", "event_key"])
            .compile(dialect=dialect)
        )
        self.select_sql, self.insert_sql = str(select), str(insert)
        self.insert_order = tuple(insert.positiontup)
        if tuple(select.positiontup) != ("b_member",) or set(self.insert_order) != set(_INBOX_COLUMNS):
            raise RuntimeError("unexpected compilation of the inbox statements")

    def executors(self, conn):
        """(lookup(member_id) → PortalAuth | None, insert(values) → rowcount) on this transaction's cursor."""
        cursor = conn.connection.driver_connection.cursor()

        def lookup(member_id: str) -> PortalAuth | None:
            row = cursor.execute(self.select_sql, (member_id,)).fetchone()
            # SQLite keeps booleans as 0/1.
            return PortalAuth(row[0], row[1], row[2], None if row[3] is None else bool(row[3])) if row else None

        def insert(values: dict) -> int:
            return cursor.execute(self.insert_sql, tuple(values[k] for k in self.insert_order)).rowcount

        return lookup, insert


def _executors(conn):
    """(lookup, insert → rows written) through SQLAlchemy (PostgreSQL)."""

    def lookup(member_id: str) -> PortalAuth | None:
        row = conn.execute(_SELECT_PORTAL, {"b_member": member_id}).first()
        return PortalAuth(*row) if row else None

    return lookup, lambda values: 0 if conn.execute(_PG_INBOX_INSERT, values).first() is None else 1


@dataclass
class Delivery:
    """One event on its way into the inbox, and what became of it."""

    member_id: str
    application_token: str = field(repr=False)  # a secret: never in a log line or a traceback's locals dump
    event: str
    key: str
    received_at: float
    fresh: bool  # its ts is within the accepted window
    payload: str = field(repr=False)  # the inbox payload with content (the bot switched on)
    routing_payload: object = field(repr=False)  # callable → the payload without content (the bot switched off)
    portal_id: int | None = None
    duplicate: bool = False
    refusal: str | None = None  # a Rejected code: nothing was written for this event
    error: BaseException | None = None
    done: bool = field(default=False, repr=False)


class ProcessGate:
    """On SQLite, one intake commit at a time across the app's processes, on a lock file next to the database.

    SQLite itself would make the second process's BEGIN IMMEDIATE sleep in its busy handler (1, 2, 5, 10… ms,
    with every request of that process waiting behind it); flock wakes the waiter as soon as the holder is done.
    """

    def __init__(self, db: Database):
        database = db.engine.url.database if db.is_sqlite else None
        self.path = f"{database}.intake-lock" if database and database != ":memory:" else None
        self._fd: int | None = None
        self._pid = 0

    @contextlib.contextmanager
    def hold(self):
        """Hold the gate (a no-op on PostgreSQL and in-memory SQLite)."""
        if self.path is None:
            yield
            return
        if self._pid != os.getpid():
            # A descriptor inherited over fork shares its lock with the parent: each process opens its own.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class InboxIntake:
    """Per-process group commit of inbox rows (see the module's docstring)."""

    def __init__(self, db: Database):
        self.db = db
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self._queue: list[Delivery] = []
        self._gate = ProcessGate(db)
        self._sqlite: _SqliteStatements | None = None

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
            with self._gate.hold(), self.db.write() as conn:
                if conn.dialect.name == "sqlite":
                    if self._sqlite is None:
                        self._sqlite = _SqliteStatements(conn.dialect)
                    lookup, insert = self._sqlite.executors(conn)
                else:
                    lookup, insert = _executors(conn)
                found = {m: lookup(m) for m in {d.member_id for d in batch if d.member_id}}
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
                    delivery.duplicate = (
                        insert(
                            {
                                "portal_id": portal.id,
                                "event_key": delivery.key,
                                "event": delivery.event,
                                "status": "pending",
                                "attempts": 0,
                                "payload": stored,
                                "next_attempt_at": delivery.received_at,
                                "received_at": delivery.received_at,
                            }
                        )
                        != 1
                    )
                    delivery.portal_id = portal.id
        except BaseException as exc:  # every waiting request hears about it, none answers 200
            for delivery in batch:
                delivery.error = exc
                delivery.portal_id = None
        finally:
            for delivery in batch:
                delivery.done = True
