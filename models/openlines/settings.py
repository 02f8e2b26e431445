"""Per-portal bot settings (switch, greeting, transfer mode, time zone) and per-line working hours."""

from __future__ import annotations

import json

import sqlalchemy as sa

from database import bot_lines, bot_settings, now
from models.openlines.dialect import upsert_insert as _insert


class BotSettingsStore:
    """Settings rows of the bot; mixed into OpenLinesService (needs `self.db`)."""

    def settings_row(self, portal_id: int) -> dict:
        """The portal's bot settings (defaults when never saved)."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(bot_settings).where(bot_settings.c.portal_id == portal_id)).first()
        if row is None:
            return {"enabled": True, "greeting": None, "timezone": None, "transfer_mode": "operator", "queue_id": None}
        return {
            "enabled": bool(row.enabled),
            "greeting": row.greeting,
            "timezone": row.timezone,
            "transfer_mode": row.transfer_mode,
            "queue_id": row.queue_id,
        }

    def _upsert_settings(self, conn, portal_id: int, **values) -> None:
        values["updated_at"] = now()
        conn.execute(
            _insert(conn)(bot_settings)
            .values(portal_id=portal_id, **values)
            .on_conflict_do_update(index_elements=["portal_id"], set_=values)
        )

    def set_enabled(self, portal_id: int, enabled: bool, actor: str = "system") -> None:
        """The per-portal switch: off = nothing stored, every chat still handed over at once."""
        with self.db.write() as conn:
            self._upsert_settings(conn, portal_id, enabled=enabled)
        self._audit(actor, "bot_enabled" if enabled else "bot_disabled", portal_id)

    def line_row(self, portal_id: int, line_id: str) -> dict | None:
        """A line's local settings."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(bot_lines).where(bot_lines.c.portal_id == portal_id, bot_lines.c.line_id == str(line_id))
            ).first()
        return dict(row._mapping) if row else None

    def lines(self, portal_id: int) -> list[dict]:
        """Every line with local settings."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(bot_lines).where(bot_lines.c.portal_id == portal_id).order_by(bot_lines.c.line_id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def _upsert_line(self, conn, portal_id: int, line_id: str, **values) -> None:
        values["updated_at"] = now()
        conn.execute(
            _insert(conn)(bot_lines)
            .values(portal_id=portal_id, line_id=str(line_id), **values)
            .on_conflict_do_update(index_elements=["portal_id", "line_id"], set_=values)
        )

    def update_settings(self, portal_id: int, changes: dict, actor: str = "system") -> dict:
        """Save validated settings (see routes/bot.py for the shape); returns the new settings."""
        keys = sorted(changes)
        lines = changes.pop("lines", None) or {}
        with self.db.write() as conn:
            if changes:
                self._upsert_settings(conn, portal_id, **changes)
            for line_id, values in lines.items():
                if "schedule" in values:
                    values["schedule"] = json.dumps(values["schedule"]) if values["schedule"] is not None else None
                self._upsert_line(conn, portal_id, line_id, **values)
        self._audit(actor, "bot_settings", portal_id, {"keys": keys})
        return self.describe_settings(portal_id)

    def describe_settings(self, portal_id: int) -> dict:
        """Settings and lines for the API."""
        out = self.settings_row(portal_id)
        out["lines"] = [
            {
                "line_id": r["line_id"],
                "name": r["name"],
                "attached": r["attached_at"] is not None,
                "schedule": json.loads(r["schedule"]) if r["schedule"] else None,
                "out_of_hours_text": r["out_of_hours_text"],
                "out_of_hours_action": r["out_of_hours_action"],
            }
            for r in self.lines(portal_id)
        ]
        return out
