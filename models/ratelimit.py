"""Requests per client address on the token-protected endpoints, counted in fixed windows in the database.

Failed token attempts have their own, stricter count (models/throttle.py); this one counts every request
to an endpoint group (admin API, dialogs API, cron tasks, metrics), so a client with a valid token still
cannot flood the endpoints that read the most. The counters live in the database (`rate_limits`), so the
limit holds across gunicorn workers and across app hosts on one PostgreSQL; each counted request is one
upsert that returns the new count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, now, rate_limits
from models.errors import ServiceError
from models.throttle import client_key


class RateLimited(ServiceError):
    """429: this client sent more requests to the group than the window allows."""

    def __init__(self, retry_after: int):
        super().__init__("rate_limited", status=429, retry_after=retry_after)
        self.retry_after = retry_after


class RateLimit:
    """At most `requests` requests per `window_seconds` per (endpoint group, client); 0 turns it off."""

    def __init__(self, db: Database, requests: int, window_seconds: int, clock: Callable[[], int] = now):
        self.db = db
        self.requests = requests
        self.window = window_seconds
        self.clock = clock

    def hit(self, group: str, client: str) -> int:
        """Count one request; raise RateLimited past the limit. Returns the count in the current window."""
        if self.requests <= 0:
            return 0
        at = self.clock()
        params = {"p_scope": group[:16], "p_client": client_key(client), "p_at": at, "p_ended": at - self.window}
        with self.db.write() as conn:
            # One statement: two workers (or hosts) counting the same client at once cannot lose a request.
            count, started = conn.execute(_upsert(conn.dialect.name), params).one()
            if count == 1:
                # A window began: drop the counters whose windows have ended (only then, to keep requests cheap).
                conn.execute(_PRUNE, params)
        if count > self.requests:
            raise RateLimited(max(1, started + self.window - at))
        return count


_PRUNE = sa.delete(rate_limits).where(rate_limits.c.window_start <= sa.bindparam("p_ended"))


@functools.cache
def _upsert(dialect: str):
    """The counting upsert for a dialect, built once: building it per request cost more than running it."""
    table = rate_limits
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    ended = table.c.window_start <= sa.bindparam("p_ended")
    stmt = insert(table).values(
        scope=sa.bindparam("p_scope"), client=sa.bindparam("p_client"), window_start=sa.bindparam("p_at"), hits=1
    )
    return stmt.on_conflict_do_update(
        index_elements=["scope", "client"],
        set_={
            "hits": sa.case((ended, 1), else_=table.c.hits + 1),
            "window_start": sa.case((ended, sa.bindparam("p_at")), else_=table.c.window_start),
        },
    ).returning(table.c.hits, table.c.window_start)
