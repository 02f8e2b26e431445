"""The Connections card: every credential the app holds for one portal, as a portal admin may see it.

Reads metadata straight from the vault's table (never a token column, so nothing here can leak one),
and works out when the keeper will next refresh each credential with the same rule as the refresh
engine (RefreshEngine.is_due). Employees' Bitrix24 pairs and personal Yandex accounts are shown in
aggregate (counts by status): an admin needs to know they are healthy, not whose they are.
"""

from __future__ import annotations

import time
from collections import Counter

import sqlalchemy as sa

from database import Database, credentials
from models.refresh import RefreshSettings
from models.vault import ACCOUNT_SUBJECT, ACTIVE, BROKEN, NEEDS_REAUTH, PORTAL_SUBJECT, REVOKED

NOT_CONNECTED = "not_connected"
MISSING = "missing"
# Worst first: an aggregate takes the status of its worst member.
_SEVERITY = (BROKEN, NEEDS_REAUTH, REVOKED, ACTIVE)

# What a portal admin can do to bring a credential back (the front end words each one).
REAUTH_OPEN_APP = "open_app"  # Bitrix24: open the app as an admin, a fresh pair is stored on the way
REAUTH_EMPLOYEE_OPEN = "employee_open"  # an employee's own Bitrix24 pair: their next open renews it
REAUTH_YANDEX_CONNECT = "yandex_connect"  # the Settings tab's connect button flow
REAUTH_EMPLOYEE_YANDEX = "employee_yandex"  # each employee reconnects their own account
REAUTH_OPERATOR = "operator"  # amoCRM accounts are registered by the app's operator

_COLUMNS = (
    credentials.c.id,
    credentials.c.provider,
    credentials.c.subject,
    credentials.c.label,
    credentials.c.status,
    credentials.c.expires_at,
    credentials.c.refresh_expires_at,
    credentials.c.last_error,
    credentials.c.last_error_at,
    credentials.c.refreshed_at,
    credentials.c.last_used_at,
    credentials.c.failure_count,
    credentials.c.refresh_token_enc.is_not(None).label("refreshable"),
)


def _worst(statuses) -> str | None:
    present = set(statuses)
    return next((s for s in _SEVERITY if s in present), None)


class Connections:
    """Builds the card's view of one portal's credentials."""

    def __init__(self, db: Database, settings: RefreshSettings, env_yandex_token: bool = False):
        self.db = db
        self.settings = settings
        # YANDEX_OAUTH_TOKEN (single-portal set-ups) serves portals with no Yandex account of their own.
        self.env_yandex_token = env_yandex_token

    def _rows(self, portal_id: int) -> list[dict]:
        query = sa.select(*_COLUMNS).where(credentials.c.portal_id == portal_id).order_by(credentials.c.id)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def next_refresh_at(self, row: dict, now: float) -> int | None:
        """When the keeper will refresh this credential (None: not refreshable, not active, or only on next use)."""
        if row["status"] != ACTIVE or not row["refreshable"]:
            return None
        s = self.settings
        due = []
        if (row["last_used_at"] or 0) >= now - s.recent_use_seconds:
            due.append(row["expires_at"] - s.ahead_seconds)
        if row["refresh_expires_at"] is not None:
            due.append(row["refresh_expires_at"] - s.renew_before_seconds)
        return max(int(now), min(due)) if due else None

    def _one(self, row: dict | None, provider: str, scope: str, reauthorize: str, now: float) -> dict:
        if row is None:
            return {
                "provider": provider,
                "scope": scope,
                "label": None,
                "status": NOT_CONNECTED if provider == "yandex" else MISSING,
                "refreshable": False,
                "refreshed_at": None,
                "next_refresh_at": None,
                "expires_at": None,
                "refresh_expires_at": None,
                "refresh_token_left_seconds": None,
                "last_error": None,
                "last_error_at": None,
                "reauthorize": reauthorize,
            }
        left = row["refresh_expires_at"] - int(now) if row["refresh_expires_at"] is not None else None
        return {
            "provider": provider,
            "scope": scope,
            "label": row["label"],
            "status": row["status"],
            "refreshable": bool(row["refreshable"]),
            "refreshed_at": row["refreshed_at"],
            "next_refresh_at": self.next_refresh_at(row, now),
            "expires_at": row["expires_at"],
            "refresh_expires_at": row["refresh_expires_at"],
            "refresh_token_left_seconds": max(0, left) if left is not None else None,
            "last_error": row["last_error"],
            "last_error_at": row["last_error_at"],
            "reauthorize": reauthorize if row["status"] != ACTIVE or provider == "yandex" else None,
        }

    def _aggregate(self, rows: list[dict], provider: str, scope: str, reauthorize: str, now: float) -> dict:
        counts = Counter(r["status"] for r in rows)
        nexts = [n for n in (self.next_refresh_at(r, now) for r in rows) if n is not None]
        lefts = [r["refresh_expires_at"] - int(now) for r in rows if r["refresh_expires_at"] is not None]
        failed = [r for r in rows if r["last_error"]]
        last_failed = max(failed, key=lambda r: r["last_error_at"] or 0) if failed else None
        refreshed = [r["refreshed_at"] for r in rows if r["refreshed_at"]]
        return {
            "provider": provider,
            "scope": scope,
            "count": len(rows),
            "by_status": dict(sorted(counts.items())),
            "status": _worst(counts) if rows else None,
            "refreshed_at": max(refreshed) if refreshed else None,
            "next_refresh_at": min(nexts) if nexts else None,
            # The shortest-lived refresh token of the group: the first one the keeper must renew.
            "refresh_token_left_seconds": max(0, min(lefts)) if lefts else None,
            "last_error": last_failed["last_error"] if last_failed else None,
            "last_error_at": last_failed["last_error_at"] if last_failed else None,
            "reauthorize": reauthorize if counts.keys() - {ACTIVE} else None,
        }

    def for_portal(self, portal_id: int, now: float | None = None) -> dict:
        """The card's data for one portal: `connections` in a fixed order (no token, no Yandex uid)."""
        t = time.time() if now is None else now
        rows = self._rows(portal_id)

        def pick(provider: str, subject_test) -> list[dict]:
            return [r for r in rows if r["provider"] == provider and subject_test(r["subject"])]

        def is_user(subject: str) -> bool:
            return subject.startswith("user:")

        b24_portal = pick("bitrix24", lambda s: s == PORTAL_SUBJECT)
        yandex_portal = pick("yandex", lambda s: s == ACCOUNT_SUBJECT)
        items = [
            self._one(b24_portal[-1] if b24_portal else None, "bitrix24", "portal", REAUTH_OPEN_APP, t),
            self._aggregate(pick("bitrix24", is_user), "bitrix24", "employees", REAUTH_EMPLOYEE_OPEN, t),
            {
                **self._one(yandex_portal[-1] if yandex_portal else None, "yandex", "portal", REAUTH_YANDEX_CONNECT, t),
                "fallback": not yandex_portal and self.env_yandex_token,
            },
            self._aggregate(pick("yandex", is_user), "yandex", "personal", REAUTH_EMPLOYEE_YANDEX, t),
        ]
        items += [self._one(r, "amocrm", "account", REAUTH_OPERATOR, t) for r in pick("amocrm", lambda s: True)]
        return {"now": int(t), "connections": items}
