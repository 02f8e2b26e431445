"""Portal REST methods: chat bots (imbot v1), system notifications and Open Lines bot sessions."""

from __future__ import annotations

import time
from typing import Any

from . import openlines
from .forms import ci_get, strip_secrets
from .rest import Ctx, method
from .shapes import RestError

MAX_BOTS = 5
_HANDLER_ERRORS = {
    "EVENT_MESSAGE_ADD": 'Handler for "Message add" event isn\'t specified',
    "EVENT_WELCOME_MESSAGE": 'Handler for "Welcome message" event isn\'t specified',
    "EVENT_BOT_DELETE": 'Handler for "Bot delete" event isn\'t specified',
}
_OPTIONAL_HANDLERS = ("EVENT_MESSAGE_UPDATE", "EVENT_MESSAGE_DELETE")


def _text(params: dict[str, Any], name: str) -> str:
    value = ci_get(params, name)
    return "" if value is None else str(value).strip()


@method("imbot.register")
def imbot_register(ctx: Ctx, params: dict[str, Any]) -> int:
    """Register a v1 bot; re-registering a CODE of the same app returns the existing id (assumption)."""
    code = _text(params, "CODE")
    if not code:
        raise RestError("CODE_ERROR", "Bot code isn't specified", 400)
    common = _text(params, "EVENT_HANDLER")
    handlers: dict[str, str] = {}
    for name, message in _HANDLER_ERRORS.items():
        handlers[name] = _text(params, name) or common
        if not handlers[name].lower().startswith(("http://", "https://")):
            raise RestError(f"{name}_ERROR", message, 400)
    for name in _OPTIONAL_HANDLERS:
        if _text(params, name) or common:
            handlers[name] = _text(params, name) or common
    properties = ci_get(params, "PROPERTIES")
    if not isinstance(properties, dict) or not (properties.get("NAME") or properties.get("LAST_NAME")):
        raise RestError("NAME_ERROR", "Bot name isn't specified", 400)
    bot_type = (_text(params, "TYPE") or "B").upper()
    openline = "Y" if bot_type == "O" else ("Y" if _text(params, "OPENLINE").upper() == "Y" else "N")
    with ctx.state.lock:
        portal = ctx.portal
        for bot in portal.bots.values():
            if bot["code"] == code:
                if bot["client_id"] == ctx.client_id:
                    return bot["id"]
                raise RestError("CODE_ERROR", "Bot code is already used by another application", 400)
        if sum(1 for b in portal.bots.values() if b["client_id"] == ctx.client_id) >= MAX_BOTS:
            raise RestError(
                "MAX_COUNT_ERROR",
                f"Has reached the maximum number of bots for application (max: {MAX_BOTS})",
                400,
            )
        bot_id = portal.new_id()
        portal.bots[bot_id] = {
            "id": bot_id,
            "code": code,
            "type": bot_type,
            "openline": openline,
            "client_id": ctx.client_id,
            "handlers": handlers,
            "properties": strip_secrets(properties),
            "registered_by": ctx.user.id,
            "time": time.time(),
        }
        return bot_id


def _own_bot(ctx: Ctx, bot_id: Any) -> dict[str, Any]:
    try:
        bot = ctx.portal.bots.get(int(bot_id))
    except (TypeError, ValueError):
        bot = None
    if bot is None:
        raise RestError("BOT_ID_ERROR", "Bot not found", 400)
    if bot["client_id"] != ctx.client_id:
        raise RestError("APP_ID_ERROR", "Bot was installed by another rest application", 400)
    return bot


@method("imbot.unregister")
def imbot_unregister(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Delete one of this app's bots."""
    with ctx.state.lock:
        bot = _own_bot(ctx, ci_get(params, "BOT_ID"))
        del ctx.portal.bots[bot["id"]]
    return True


@method("imbot.bot.list")
def imbot_bot_list(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """All bots of the portal keyed by id."""
    with ctx.state.lock:
        return {
            str(b["id"]): {
                "ID": b["id"],
                "NAME": str(b["properties"].get("NAME", "")),
                "CODE": b["code"],
                "OPENLINE": b["openline"],
            }
            for b in ctx.portal.bots.values()
        }


@method("imbot.message.add")
def imbot_message_add(ctx: Ctx, params: dict[str, Any]) -> int:
    """Send a message as a bot (default: the app's first bot)."""
    with ctx.state.lock:
        bot_id = ci_get(params, "BOT_ID")
        if bot_id in (None, ""):
            own = [b for b in ctx.portal.bots.values() if b["client_id"] == ctx.client_id]
            if not own:
                raise RestError("BOT_ID_ERROR", "Bot not found", 400)
            bot = own[0]
        else:
            bot = _own_bot(ctx, bot_id)
        dialog_id = _text(params, "DIALOG_ID")
        if not dialog_id:
            raise RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty", 400)
        message = _text(params, "MESSAGE")
        if not message and not ci_get(params, "ATTACH"):
            raise RestError("MESSAGE_EMPTY", "Message can't be empty", 400)
        message_id = ctx.portal.new_id()
        ctx.portal.record(
            ctx.portal.bot_messages,
            {
                "id": message_id,
                "bot_id": bot["id"],
                "dialog_id": dialog_id,
                "message": message,
                "attach": ci_get(params, "ATTACH"),
                "keyboard": ci_get(params, "KEYBOARD"),
                "system": _text(params, "SYSTEM") or "N",
                "user_id": ctx.user.id,
                "time": time.time(),
            },
        )
        openlines.bot_message(ctx, bot["id"], dialog_id, message)
        return message_id


@method("im.notify.system.add", "im.notify", "im.notify.personal.add")
def im_notify(ctx: Ctx, params: dict[str, Any]) -> int:
    """Notification to a user; a TAG replaces this app's older notification with the same tag."""
    user_id = _text(params, "USER_ID")
    if not user_id or user_id == "0":
        raise RestError("USER_ID_EMPTY", "User ID can't be empty", 400)
    message = _text(params, "MESSAGE")
    if not message:
        raise RestError("MESSAGE_EMPTY", "Message can't be empty", 400)
    tag = _text(params, "TAG")
    with ctx.state.lock:
        notes = ctx.portal.notifications
        if tag:
            notes[:] = [n for n in notes if not (n["tag"] == tag and n["client_id"] == ctx.client_id)]
        note_id = ctx.portal.new_id()
        ctx.portal.record(
            notes,
            {
                "id": note_id,
                "user_id": int(user_id) if user_id.isdigit() else user_id,
                "message": message,
                "message_out": _text(params, "MESSAGE_OUT"),
                "tag": tag,
                "sub_tag": _text(params, "SUB_TAG"),
                "from_user_id": ctx.user.id,
                "client_id": ctx.client_id,
                "time": time.time(),
            },
        )
        return note_id


def _session_action(ctx: Ctx, params: dict[str, Any], action: str) -> bool:
    chat_id = _text(params, "CHAT_ID")
    if not chat_id:
        raise RestError("CHAT_ID_EMPTY", "Chat ID can't be empty", 400)
    if action == "transfer" and not any(_text(params, k) for k in ("USER_ID", "QUEUE_ID", "TRANSFER_ID")):
        raise RestError("TRANSFER_ID_EMPTY", "Transfer ID can't be empty", 400)
    with ctx.state.lock:
        openlines.bot_action(ctx, action, params)
        ctx.portal.record(
            ctx.portal.openlines,
            {
                "action": action,
                "chat_id": chat_id,
                "params": strip_secrets(params),
                "user_id": ctx.user.id,
                "time": time.time(),
            },
        )
    return True


@method("imopenlines.bot.session.operator")
def session_operator(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Hand the dialog to the next free operator."""
    return _session_action(ctx, params, "operator")


@method("imopenlines.bot.session.transfer")
def session_transfer(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Transfer the dialog to a user or queue."""
    return _session_action(ctx, params, "transfer")


@method("imopenlines.bot.session.finish")
def session_finish(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Close the bot's part of the session."""
    return _session_action(ctx, params, "finish")


@method("imopenlines.bot.session.message.send")
def session_message_send(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Bot message inside an Open Lines session."""
    return _session_action(ctx, params, "message.send")
