"""The audit log: who read or changed what (token reads, account changes, admin tokens, uninstalls).

Models record the entries themselves, next to the action they describe; routes never write here.
Entries never hold token values.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from database import Database, audit_log, now


class AuditLog:
    """Append-only records in the `audit_log` table."""

    def __init__(self, db: Database):
        self.db = db

    def record(self, actor: str, action: str, target: str, detail: dict | None = None, *, conn=None) -> None:
        """Write one entry (inside `conn`'s transaction when given, else in its own)."""
        statement = sa.insert(audit_log).values(
            at=now(),
            actor=str(actor)[:128],
            action=action[:64],
            target=str(target)[:255],
            detail=json.dumps(detail or {}, ensure_ascii=False),
        )
        if conn is not None:
            conn.execute(statement)
            return
        with self.db.write() as c:
            c.execute(statement)

    def entries(self, *, action: str | None = None, target: str | None = None, limit: int = 100) -> list[dict]:
        """The newest entries, optionally of one action or target (for operators and tests)."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if action:
            query = query.where(audit_log.c.action == action)
        if target:
            query = query.where(audit_log.c.target == target)
        with self.db.read() as conn:
            return [dict(r._mapping, detail=json.loads(r.detail or "{}")) for r in conn.execute(query)]
