"""Failed secret-token attempts (admin, cron, metrics) counted per client address, then refused for a while.

The count lives in the database (`auth_failures`), so a burst spread over several gunicorn workers is
still one burst. A successful request costs one primary-key read; only failures write.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, auth_failures, now
from models.errors import ServiceError

log = logging.getLogger(__name__)

AuditFn = Callable[[str, str, str, dict], None]


class TooManyAttempts(ServiceError):
    """429: this client failed too often; `retry_after` seconds until the window ends."""

    def __init__(self, retry_after: int):
        super().__init__("too_many_attempts", status=429, retry_after=retry_after)
        self.retry_after = retry_after


def client_key(address: str) -> str:
    """The unit a client is counted by: an IPv4 address, or the /64 network of an IPv6 one.

    One IPv6 subscriber usually holds a whole /64 and can use a fresh address for every request;
    counting addresses one by one would give such a client an unlimited number of guesses.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthThrottle:
    """A fixed window per (scope, client): `attempts` failures within `window_seconds`, then 429."""

    def __init__(self, db: Database, attempts: int, window_seconds: int, audit: AuditFn):
        self.db = db
        self.attempts = attempts
        self.window = window_seconds
        self.audit = audit

    def check(self, scope: str, client: str, at: int | None = None) -> None:
        """Raise TooManyAttempts while this client is over the limit for this scope."""
        at = now() if at is None else at
        client = client_key(client)
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(auth_failures.c.window_start, auth_failures.c.failures).where(
                    auth_failures.c.scope == scope, auth_failures.c.client == client
                )
            ).first()
        if row is not None and row.failures >= self.attempts and at < row.window_start + self.window:
            raise TooManyAttempts(max(1, row.window_start + self.window - at))

    def failed(self, scope: str, client: str, at: int | None = None) -> int:
        """Count a failed attempt and audit it; returns the failures in the current window."""
        at = now() if at is None else at
        client = client_key(client)
        stale = auth_failures.c.window_start <= at - self.window
        with self.db.write() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(auth_failures).values(scope=scope, client=client, window_start=at, failures=1)
            # One statement, so two workers counting the same client at once cannot lose a failure.
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["scope", "client"],
                    set_={
                        "failures": sa.case((stale, 1), else_=auth_failures.c.failures + 1),
                        "window_start": sa.case((stale, at), else_=auth_failures.c.window_start),
                    },
                )
            )
            failures = conn.execute(
                sa.select(auth_failures.c.failures).where(
                    auth_failures.c.scope == scope, auth_failures.c.client == client
                )
            ).scalar_one()
            # Ended windows are of no use (the row above was just renewed if its window had ended);
            # pruning here keeps the table small at no cost to requests that succeed.
            conn.execute(sa.delete(auth_failures).where(auth_failures.c.window_start <= at - self.window))
        action = "auth_throttled" if failures == self.attempts else "auth_failed"
        if failures <= self.attempts:
            # Past the limit every attempt is refused before it is checked, so nothing more is written.
            self.audit(f"client:{client}", action, scope, {"ip": client, "failures": failures})
        log.warning("%s token refused for %s (%d in window)", scope, client, failures)
        return failures
