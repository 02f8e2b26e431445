"""Open Lines bot: events inbox, dialogs, working hours, hand-off to an operator, set-up at install.

`service.OpenLinesService` does the work; `setup_commands` / `record_setup` are what the portal set-up
(models/portal.py or models/install.py) runs to register the bot and bind OnSessionFinish.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from database import bot_settings, now, portals
from models.bitrix24 import Bitrix24Error
from models.openlines.events import BOT_EVENTS, SESSION_FINISH
from models.openlines.service import BotConfig, OpenLinesService, ProcessReport

__all__ = [
    "BOT_EVENTS",
    "SESSION_FINISH",
    "BotConfig",
    "OpenLinesService",
    "ProcessReport",
    "record_setup",
    "setup_commands",
]

log = logging.getLogger(__name__)


def setup_commands(portal, settings, work_position: str = "") -> dict[str, tuple[str, dict]]:
    """Batch commands of the bot's set-up: register (idempotent by CODE), find it, bind OnSessionFinish."""
    base = settings.public_url.rstrip("/")
    handler = f"{base}/python_bot/"
    return {
        "bot": (
            "imbot.register",
            {
                "CODE": settings.bot_code,
                "TYPE": "O",
                "OPENLINE": "Y",
                "EVENT_MESSAGE_ADD": handler,
                "EVENT_WELCOME_MESSAGE": handler,
                "EVENT_BOT_DELETE": handler,
                "PROPERTIES": {"NAME": settings.bot_name, "COLOR": "AQUA", "WORK_POSITION": work_position},
            },
        ),
        "bots": ("imbot.bot.list", {}),
        "session_finish": ("event.bind", {"event": "OnSessionFinish", "handler": handler}),
    }


def record_setup(db, portal, answer: dict, bot_code: str) -> int:
    """Store what the set-up batch gave: the bot id (raises Bitrix24Error when there is none)."""
    results = answer.get("result") or {}
    errors = answer.get("result_error") or {}
    raw = results.get("bot")
    bot_id = int(raw) if str(raw).isdigit() else None
    if bot_id is None:
        # Re-registration on update: a portal that refuses a known CODE still lists our bot.
        listed = results.get("bots")
        for item in listed.values() if isinstance(listed, dict) else listed or []:
            if isinstance(item, dict) and str(item.get("CODE") or "") == bot_code and str(item.get("ID")).isdigit():
                bot_id = int(item["ID"])
    if bot_id is None:
        error = errors.get("bot") if isinstance(errors.get("bot"), dict) else {}
        raise Bitrix24Error(str(error.get("error") or "BOT_NOT_REGISTERED"), str(error.get("error_description") or ""))
    bind_error = errors.get("session_finish") if isinstance(errors.get("session_finish"), dict) else {}
    bound = "session_finish" in results or "already" in str(bind_error.get("error_description") or "").lower()
    if bind_error and not bound:
        log.info(
            "portal %s did not bind OnSessionFinish (%s): the task run finds finished sessions",
            portal.member_id,
            bind_error.get("error"),
        )
    ts = now()
    with db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(bot_id=bot_id, updated_at=ts))
        values = {
            "bot_registered_version": (portal.version or "")[:32] or None,
            "session_finish_bound": bound,
            "updated_at": ts,
        }
        exists = conn.execute(sa.select(bot_settings.c.portal_id).where(bot_settings.c.portal_id == portal.id)).first()
        if exists:
            conn.execute(sa.update(bot_settings).where(bot_settings.c.portal_id == portal.id).values(**values))
        else:
            conn.execute(sa.insert(bot_settings).values(portal_id=portal.id, enabled=True, **values))
    return bot_id
