"""Read side of the bot for the API and the admin status: dialogs with filters and paging, bot state."""

from __future__ import annotations

import json

import sqlalchemy as sa

from database import bot_handoffs, bot_inbox, bot_lines, bot_settings, dialog_messages, dialogs, portals


class DialogQueries:
    """Queries of the bot's tables; mixed into OpenLinesService (needs `self.db`, `self.portals`)."""

    def status(self, portal) -> dict:
        """Bot state of one portal for the admin status."""
        from models.vault import PORTAL_SUBJECT

        settings = self.settings_row(portal.id)
        with self.db.read() as conn:
            last = conn.execute(
                sa.select(sa.func.max(bot_inbox.c.received_at)).where(bot_inbox.c.portal_id == portal.id)
            ).scalar()
            failed = conn.execute(
                sa.select(sa.func.count())
                .select_from(bot_inbox)
                .where(bot_inbox.c.portal_id == portal.id, bot_inbox.c.status == "failed")
            ).scalar()
            attached = [
                r.line_id
                for r in conn.execute(
                    sa.select(bot_lines.c.line_id).where(
                        bot_lines.c.portal_id == portal.id, bot_lines.c.attached_at.is_not(None)
                    )
                )
            ]
        cred = self.portals.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
        return {
            "bot_registered": bool(portal.bot_id),
            "bot_id": portal.bot_id,
            "enabled": settings["enabled"],
            "lines_attached": attached,
            "last_event_at": int(last) if last else None,
            "inbox_backlog": self.backlog(portal.id),
            "inbox_failed": int(failed or 0),
            "credential": cred.status if cred else "missing",
        }

    def global_status(self) -> dict:
        """Bot state over every portal (the global admin token without `portal=`)."""
        with self.db.read() as conn:
            by_status = dict(
                conn.execute(sa.select(bot_inbox.c.status, sa.func.count()).group_by(bot_inbox.c.status)).all()
            )
            last = conn.execute(sa.select(sa.func.max(bot_inbox.c.received_at))).scalar()
            registered = conn.execute(
                sa.select(sa.func.count())
                .select_from(portals)
                .where(portals.c.bot_id.is_not(None), portals.c.status == "installed")
            ).scalar()
            disabled = conn.execute(
                sa.select(sa.func.count()).select_from(bot_settings).where(bot_settings.c.enabled == sa.false())
            ).scalar()
        return {
            "portals_with_bot": int(registered or 0),
            "portals_switched_off": int(disabled or 0),
            "inbox": {k: int(v) for k, v in by_status.items()},
            "inbox_backlog": int(by_status.get("pending", 0)),
            "last_event_at": int(last) if last else None,
        }

    def _dialog_filters(self, portal_id: int, filters: dict):
        conds = [dialogs.c.portal_id == portal_id]
        if filters.get("status"):
            conds.append(dialogs.c.status == filters["status"])
        if filters.get("line_id"):
            conds.append(dialogs.c.line_id == filters["line_id"])
        if filters.get("from") is not None:
            conds.append(dialogs.c.created_at >= filters["from"])
        if filters.get("to") is not None:
            conds.append(dialogs.c.created_at < filters["to"])
        if filters.get("q"):
            # LIKE metacharacters in the search are literal.
            pattern = "%" + filters["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conds.append(
                sa.or_(
                    dialogs.c.client_name.ilike(pattern, escape="\\"),
                    dialogs.c.first_message.ilike(pattern, escape="\\"),
                )
            )
        return conds

    def list_dialogs(self, portal_id: int, filters: dict, page: int, per_page: int) -> dict:
        """A page of the portal's dialogs, newest first."""
        conds = self._dialog_filters(portal_id, filters)
        with self.db.read() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(dialogs).where(*conds)).scalar()
            rows = conn.execute(
                sa.select(dialogs)
                .where(*conds)
                .order_by(dialogs.c.created_at.desc(), dialogs.c.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            ).all()
        return {"items": [_dialog_dict(r) for r in rows], "page": page, "per_page": per_page, "total": int(total)}

    def iter_dialogs(self, portal_id: int, filters: dict, limit: int = 100_000) -> list[dict]:
        """Every matching dialog (CSV export), newest first."""
        conds = self._dialog_filters(portal_id, filters)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(dialogs).where(*conds).order_by(dialogs.c.created_at.desc(), dialogs.c.id.desc()).limit(limit)
            ).all()
        return [_dialog_dict(r) for r in rows]

    def get_dialog(self, portal_id: int, chat_id: int) -> dict | None:
        """One dialog with its messages and the hand-off outcome."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(dialogs).where(dialogs.c.portal_id == portal_id, dialogs.c.chat_id == chat_id)
            ).first()
            if row is None:
                return None
            messages = conn.execute(
                sa.select(dialog_messages)
                .where(dialog_messages.c.dialog_pk == row.id)
                .order_by(dialog_messages.c.sent_at, dialog_messages.c.id)
            ).all()
            handoff = conn.execute(
                sa.select(bot_handoffs).where(
                    bot_handoffs.c.portal_id == portal_id, bot_handoffs.c.chat_key == f"chat{chat_id}"
                )
            ).first()
        out = _dialog_dict(row)
        out["messages"] = [
            {
                "id": m.message_id,
                "author": m.author_kind,
                "author_id": m.author_id,
                "text": m.text,
                "sent_at": m.sent_at,
                "source": m.source,
            }
            for m in messages
        ]
        out["handoff"] = (
            {
                "state": handoff.state,
                "method": handoff.method,
                "outcome": handoff.outcome,
                "attempts": handoff.attempts,
                "done_at": handoff.done_at,
            }
            if handoff
            else None
        )
        return out


def _dialog_dict(row) -> dict:
    return {
        "chat_id": row.chat_id,
        "dialog_id": row.dialog_id,
        "line_id": row.line_id,
        "connector": row.connector,
        "client": {"id": row.client_id, "name": row.client_name},
        "crm": json.loads(row.crm_bindings) if row.crm_bindings else {},
        "language": row.language,
        "first_message": row.first_message,
        "status": row.status,
        "transfer_outcome": row.transfer_outcome,
        "transferred_at": row.transferred_at,
        "out_of_hours": bool(row.out_of_hours),
        "session_id": row.session_id,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "last_message_at": row.last_message_at,
    }
