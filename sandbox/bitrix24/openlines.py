"""Open Lines on a fake portal: two lines, client dialogs, the welcome bot, operators and sessions.

A client message (control API) opens a chat and a session; when the line's welcome bot is the app's bot the
portal posts ONIMBOTJOINCHAT and ONIMBOTMESSAGEADD to the bot's handlers (spec §4.6, §5.2-§5.4). Once an
operator has the dialog (bot hand-off, transfer, or an operator reply) the bot gets none of its messages.
Events are posted synchronously from the control call, without holding the state lock (the app may call
the portal back while handling them).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..state import NotFoundError, Portal, SandboxError, State
from . import lifecycle
from .forms import ci_get, flatten, strip_secrets
from .rest import Ctx, method
from .shapes import RestError
from .users import TIME_ZONE

LANGUAGE = "ru"
CRM_ENTITY = "LEAD"
SYSTEM_FINISHED = "Диалог завершен."
# Which registration field of imbot.register receives which event (spec §4.4).
_BOT_HANDLER = {"ONIMBOTJOINCHAT": "EVENT_WELCOME_MESSAGE", "ONIMBOTMESSAGEADD": "EVENT_MESSAGE_ADD"}
_LINE_SEED = (
    (1, "Открытая линия", 2),
    (2, "Поддержка", 3),
)


class ConflictError(SandboxError):
    """The control request does not fit the dialog's state (answered 409)."""


def _line_config(line_id: int, name: str, operator: int) -> dict[str, Any]:
    return {
        "ID": str(line_id),
        "ACTIVE": "Y",
        "LINE_NAME": name,
        "CRM": "Y",
        "CRM_CREATE": "lead",
        "QUEUE_TYPE": "evenly",
        "QUEUE": [str(operator)],
        "WELCOME_BOT_ENABLE": "N",
        "WELCOME_BOT_JOIN": "always",
        "WELCOME_BOT_ID": "0",
        "WELCOME_BOT_TIME": "600",
        "WELCOME_BOT_LEFT": "queue",
        "WORKTIME_ENABLE": "N",
        "LANGUAGE_ID": LANGUAGE,
    }


def lines(portal: Portal) -> dict[int, dict[str, Any]]:
    """The portal's lines (seeded on first use: two lines, one queue operator each). Call under the lock."""
    if not portal.lines:
        for line_id, name, operator in _LINE_SEED:
            portal.lines[line_id] = _line_config(line_id, name, operator)
    return portal.lines


def _now_iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, ZoneInfo(TIME_ZONE)).isoformat(timespec="seconds")


def _session(chat: dict[str, Any]) -> dict[str, Any]:
    return chat["sessions"][-1]


def _is_open(chat: dict[str, Any]) -> bool:
    return _session(chat)["closed"] is None


def _entity_data_1(chat: dict[str, Any]) -> str:
    # Documented layout: CRM flag | CRM type | CRM id | pause | wait | session id | created ts | … (§4.6 history.get)
    session = _session(chat)
    return f"Y|{CRM_ENTITY}|{chat['lead_id']}|N|N|{session['id']}|{int(chat['created'])}|0|0|0"


def _entity_data_2(chat: dict[str, Any]) -> str:
    return f"LEAD|{chat['lead_id']}|COMPANY|0|CONTACT|0|DEAL|0"


def find_chat(portal: Portal, chat_id: Any) -> dict[str, Any] | None:
    """Chat by numeric id or `chat<N>` dialog id. Call under the lock."""
    text = str(chat_id if chat_id is not None else "").strip().lower().removeprefix("chat")
    return portal.chats.get(int(text)) if text.isdigit() else None


def _add_message(portal: Portal, chat: dict[str, Any], author: str, author_id: int, text: str, **extra: Any) -> int:
    message_id = portal.new_id()
    chat["messages"].append(
        {
            "id": message_id,
            "session_id": _session(chat)["id"],
            "author": author,
            "author_id": author_id,
            "text": text,
            "time": time.time(),
            **extra,
        }
    )
    return message_id


def _new_session(portal: Portal, chat: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    bot_id = None
    if line.get("WELCOME_BOT_ENABLE") == "Y":
        candidate = str(line.get("WELCOME_BOT_ID") or "0")
        first = not chat["sessions"]
        if candidate.isdigit() and int(candidate) in portal.bots and (first or line.get("WELCOME_BOT_JOIN") != "first"):
            bot_id = int(candidate)
    session = {
        "id": portal.new_id(),
        "started": time.time(),
        "closed": None,
        "closed_by": None,
        "status": "bot" if bot_id else "queue",
        "bot_id": bot_id,
        "operator_id": None,
    }
    chat["sessions"].append(session)
    return session


def public_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat as /_sandbox/.../state shows it."""
    return {
        "chat_id": chat["chat_id"],
        "dialog_id": chat["dialog_id"],
        "line_id": chat["line_id"],
        "connector": chat["connector"],
        "entity_id": chat["entity_id"],
        "entity_data_2": _entity_data_2(chat),
        "client": dict(chat["client"]),
        "client_user_id": chat["user_id"],
        "sessions": [dict(s) for s in chat["sessions"]],
        "messages": [dict(m) for m in chat["messages"]],
    }


# --- events to the bot ---------------------------------------------------------------------------
def _chat_params(chat: dict[str, Any]) -> dict[str, str]:
    return {
        "CHAT_ID": str(chat["chat_id"]),
        "CHAT_TITLE": f"{chat['client']['name']} - {chat['line_name']}",
        "CHAT_AUTHOR_ID": "0",
        "CHAT_TYPE": "L",
        "MESSAGE_TYPE": "L",
        "CHAT_ENTITY_TYPE": "LINES",
        "CHAT_ENTITY_ID": chat["entity_id"],
        "CHAT_ENTITY_DATA_1": _entity_data_1(chat),
        "CHAT_ENTITY_DATA_2": _entity_data_2(chat),
        "CHAT_ENTITY_DATA_3": "",
        "DIALOG_ID": chat["dialog_id"],
        "LANGUAGE": LANGUAGE,
    }


def _client_user(chat: dict[str, Any]) -> dict[str, str]:
    first, _, last = chat["client"]["name"].partition(" ")
    return {
        "ID": str(chat["user_id"]),
        "NAME": chat["client"]["name"],
        "FIRST_NAME": first,
        "LAST_NAME": last,
        "WORK_POSITION": "",
        "GENDER": "M",
        "IS_BOT": "N",
        "IS_CONNECTOR": "Y",
        "IS_NETWORK": "N",
        "IS_EXTRANET": "Y",
    }


def _join_fields(chat: dict[str, Any], bot_id: int) -> dict[str, Any]:
    params = {**_chat_params(chat), "BOT_ID": str(bot_id), "USER_ID": str(chat["user_id"]), "ACCESS_HISTORY": "1"}
    return {"PARAMS": params, "USER": _client_user(chat)}


def _message_fields(chat: dict[str, Any], bot_id: int, message: dict[str, Any]) -> dict[str, Any]:
    params = {
        **_chat_params(chat),
        "MESSAGE": message["text"],
        "MESSAGE_ORIGINAL": message["text"],
        "MESSAGE_ID": str(message["id"]),
        "FROM_USER_ID": str(chat["user_id"]),
        "AUTHOR_ID": str(chat["user_id"]),
        "TO_USER_ID": str(bot_id),
        "TO_CHAT_ID": str(chat["chat_id"]),
        "SYSTEM": "N",
        "COMMAND_CONTEXT": "TEXTAREA",
        "PLATFORM_CONTEXT": "",
        "CHAT_USER_COUNT": "2",
        "IS_MANAGER": "N",
    }
    return {"PARAMS": params, "USER": _client_user(chat)}


def _post(
    state: State, portal: Portal, event: str, url: str, pairs: list[tuple[str, str]], handler_id: Any
) -> list[int | None]:
    """Deliver per the knobs (late, twice); statuses of every attempt."""
    with state.lock:
        delay = float(state.config["openlines_delivery_delay_ms"]) / 1000.0
        times = 2 if state.config["openlines_duplicate_delivery"] else 1
        timeout = float(state.config["openlines_event_timeout"])
    statuses: list[int | None] = []
    for _ in range(times):
        if delay > 0:
            time.sleep(delay)
        outcome = lifecycle.deliver(state, portal, event, url, pairs, handler_id, timeout=timeout)
        statuses.append(outcome["status"])
    return statuses


def _bot_event(
    state: State, portal: Portal, bot: dict[str, Any], event: str, fields: dict[str, Any]
) -> list[int | None]:
    url = bot["handlers"].get(_BOT_HANDLER[event])
    if not url:
        return []
    block = lifecycle.bot_block(state, portal, bot)
    # The bot's own tokens also fill the top-level auth: an external client has none of its own.
    auth = {k: v for k, v in block.items() if k not in ("AUTH", "BOT_ID", "BOT_CODE", "client_id")}
    pairs = [
        ("event", event),
        ("event_handler_id", str(bot["id"])),
        *flatten({"data": {"BOT": {str(bot["id"]): block}, **fields}}),
        ("ts", str(int(time.time()))),
        *flatten({"auth": auth}),
    ]
    return _post(state, portal, event, url, pairs, bot["id"])


def _deliverable_bot(state: State, portal: Portal, chat: dict[str, Any]) -> dict[str, Any] | None:
    """The app's bot when it should see this chat's client messages now, else None. Call under the lock."""
    session = _session(chat)
    if session["status"] != "bot" or session["closed"] is not None or not portal.install_finished:
        return None
    bot = portal.bots.get(session["bot_id"])
    if bot is None or bot["client_id"] != state.our_client_id:
        return None
    return dict(bot)


# --- control API actions -------------------------------------------------------------------------
def client_message(state: State, portal: Portal, body: dict[str, Any]) -> dict[str, Any]:
    """A client writes to a line: new chat (chat_id null) or the next message of an existing one."""
    text = str(body.get("text") or "").strip()
    if not text:
        raise SandboxError("text is required")
    client = body.get("client") if isinstance(body.get("client"), dict) else {}
    connector = str(body.get("connector") or "livechat")
    joined = False
    with state.lock:
        if body.get("chat_id") in (None, ""):
            line_id = body.get("line_id", 1)
            line = lines(portal).get(int(line_id)) if str(line_id).isdigit() else None
            if line is None:
                raise NotFoundError(f"unknown line {line_id}")
            chat_id = portal.new_id()
            user_id = portal.new_id()
            client_id = str(client.get("id") or user_id)
            chat = {
                "chat_id": chat_id,
                "dialog_id": f"chat{chat_id}",
                "line_id": int(line["ID"]),
                "line_name": line["LINE_NAME"],
                "connector": connector,
                "entity_id": f"{connector}|{line['ID']}|{chat_id}|{client_id}",
                "client": {"id": client_id, "name": str(client.get("name") or f"Client {client_id}")},
                "user_id": user_id,
                "lead_id": portal.new_id(),
                "created": time.time(),
                "sessions": [],
                "messages": [],
            }
            portal.chats[chat_id] = chat
            _new_session(portal, chat, line)
            joined = True
        else:
            chat = find_chat(portal, body["chat_id"])
            if chat is None:
                raise NotFoundError(f"unknown chat {body['chat_id']}")
            if not _is_open(chat):
                line = lines(portal)[chat["line_id"]]
                _new_session(portal, chat, line)
                joined = True
        message_id = _add_message(portal, chat, "client", chat["user_id"], text)
        message = dict(chat["messages"][-1])
        bot = _deliverable_bot(state, portal, chat)
        snapshot = {**chat, "sessions": [dict(s) for s in chat["sessions"]]}
    deliveries: list[int | None] = []
    if bot is not None:
        if joined:
            deliveries += _bot_event(state, portal, bot, "ONIMBOTJOINCHAT", _join_fields(snapshot, bot["id"]))
        deliveries += _bot_event(state, portal, bot, "ONIMBOTMESSAGEADD", _message_fields(snapshot, bot["id"], message))
    return {
        "chat_id": snapshot["chat_id"],
        "dialog_id": snapshot["dialog_id"],
        "session_id": _session(snapshot)["id"],
        "message_id": message_id,
        "deliveries": deliveries,
    }


def _open_chat(portal: Portal, chat_id: Any) -> dict[str, Any]:
    chat = find_chat(portal, chat_id)
    if chat is None:
        raise NotFoundError(f"unknown chat {chat_id}")
    if not _is_open(chat):
        raise ConflictError(f"the session of chat {chat_id} is already finished")
    return chat


def _queue_operator(portal: Portal, line_id: Any) -> int:
    line = lines(portal).get(int(line_id)) if str(line_id).isdigit() else None
    queue = (line or {}).get("QUEUE") or ["1"]
    return int(queue[0])


def operator_reply(state: State, portal: Portal, body: dict[str, Any]) -> dict[str, Any]:
    """The operator answers (and so takes the dialog: the bot gets no more of its messages)."""
    text = str(body.get("text") or "").strip()
    if not text:
        raise SandboxError("text is required")
    with state.lock:
        chat = _open_chat(portal, body.get("chat_id"))
        session = _session(chat)
        operator_id = body.get("operator_id") or session["operator_id"] or _queue_operator(portal, chat["line_id"])
        if portal.find_user(operator_id) is None:
            raise NotFoundError(f"unknown user {operator_id}")
        session["status"], session["operator_id"] = "operator", int(operator_id)
        message_id = _add_message(portal, chat, "operator", int(operator_id), text)
        return {
            "chat_id": chat["chat_id"],
            "session_id": session["id"],
            "message_id": message_id,
            "operator_id": int(operator_id),
        }


def _close(portal: Portal, chat: dict[str, Any], by: str) -> dict[str, Any]:
    session = _session(chat)
    _add_message(portal, chat, "system", 0, SYSTEM_FINISHED)
    session["closed"], session["closed_by"], session["status"] = time.time(), by, "closed"
    return session


def finish(state: State, portal: Portal, body: dict[str, Any]) -> dict[str, Any]:
    """The operator ends the session; OnSessionFinish goes to the handlers bound for it."""
    with state.lock:
        chat = _open_chat(portal, body.get("chat_id"))
        session = dict(_close(portal, chat, "operator"))
        targets = [
            dict(h)
            for h in portal.handlers
            if h["client_id"] == state.our_client_id and h["event"] == "ONSESSIONFINISH"
        ]
        if not portal.install_finished:
            targets = []
        operator_id = session["operator_id"] or _queue_operator(portal, chat["line_id"])
    data = {
        "connector": {
            "connector_id": chat["connector"],
            "line_id": str(chat["line_id"]),
            "chat_id": str(chat["chat_id"]),
            "user_id": str(chat["user_id"]),
        },
        "session": {"id": str(session["id"]), "closed": "Y", "parent_id": "0", "close_term": "0"},
        "chat": {"id": str(chat["chat_id"])},
        "user": {"id": str(operator_id)},
    }
    deliveries: list[int | None] = []
    for handler in targets:
        acting = handler["auth_type"] if handler["auth_type"] not in ("", "0") else operator_id
        grant = state.mint_bitrix(portal, int(acting))
        pairs = [
            ("event", "ONSESSIONFINISH"),
            ("event_handler_id", str(handler["id"])),
            *flatten({"data": data}),
            ("ts", str(int(time.time()))),
            *flatten({"auth": lifecycle.token_block(state, portal, grant)}),
        ]
        deliveries += _post(state, portal, "ONSESSIONFINISH", handler["handler"], pairs, handler["id"])
    return {"chat_id": chat["chat_id"], "session_id": session["id"], "deliveries": deliveries}


# --- hooks from the bot's REST methods (methods_im) ----------------------------------------------
def bot_action(ctx: Ctx, action: str, params: dict[str, Any]) -> None:
    """Apply imopenlines.bot.session.* to a simulated chat (unknown chats are only recorded)."""
    chat = find_chat(ctx.portal, ci_get(params, "CHAT_ID"))
    if chat is None:
        return
    session = _session(chat)
    if session["closed"] is not None:
        raise RestError("WRONG_CHAT", "Chat is already finished", 400)
    if action in ("operator", "transfer") and session["status"] == "operator":
        raise RestError("WRONG_CHAT", "Operator is not a bot", 400)
    if action == "operator":
        session["status"], session["operator_id"] = "operator", _queue_operator(ctx.portal, chat["line_id"])
    elif action == "transfer":
        user_id = str(ci_get(params, "USER_ID") or "")
        queue = str(ci_get(params, "QUEUE_ID") or "") or str(ci_get(params, "TRANSFER_ID") or "").removeprefix("queue")
        if user_id:
            if ctx.portal.find_user(user_id) is None:
                raise RestError("OPERATOR_WRONG", "Operator not found", 400)
            operator = int(user_id)
        else:
            if not queue.isdigit() or int(queue) not in lines(ctx.portal):
                raise RestError("OPERATOR_WRONG", "Queue not found", 400)
            operator = _queue_operator(ctx.portal, queue)
        session["status"], session["operator_id"] = "operator", operator
    elif action == "finish":
        _close(ctx.portal, chat, "bot")
    elif action == "message.send":
        text = str(ci_get(params, "MESSAGE") or "")
        _add_message(ctx.portal, chat, "bot", session["bot_id"] or 0, text, name=str(ci_get(params, "NAME") or ""))


def bot_message(ctx: Ctx, bot_id: int, dialog_id: str, text: str) -> None:
    """imbot.message.add into a simulated Open Lines chat joins its history."""
    chat = find_chat(ctx.portal, dialog_id) if dialog_id.lower().startswith("chat") else None
    if chat is not None:
        _add_message(ctx.portal, chat, "bot", bot_id, text)


# --- REST methods --------------------------------------------------------------------------------
def _config_id(params: dict[str, Any]) -> int:
    raw = str(ci_get(params, "CONFIG_ID", default="") or "")
    if not raw.isdigit():
        raise RestError("CONFIG_ID_EMPTY", "Config ID can't be empty", 400)
    return int(raw)


@method("imopenlines.config.list.get")
def config_list(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All lines of the portal with their settings."""
    with ctx.state.lock:
        return [dict(line) for line in lines(ctx.portal).values()]


@method("imopenlines.config.get")
def config_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """One line's settings."""
    with ctx.state.lock:
        line = lines(ctx.portal).get(_config_id(params))
        if line is None:
            raise RestError("CONFIG_NOT_FOUND", "Config not found", 400)
        return dict(line)


@method("imopenlines.config.update")
def config_update(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Change a line's settings (admins only); values are stored as Bitrix24 strings."""
    ctx.require_admin()
    changes = ci_get(params, "PARAMS")
    if not isinstance(changes, dict) or not changes:
        raise RestError("PARAMS_EMPTY", "Params can't be empty", 400)
    with ctx.state.lock:
        line = lines(ctx.portal).get(_config_id(params))
        if line is None:
            raise RestError("CONFIG_NOT_FOUND", "Config not found", 400)
        for key, value in strip_secrets(changes).items():
            if str(key).upper() == "ID":
                continue
            line[str(key).upper()] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return True


def _chat_by_params(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    chat = None
    if ci_get(params, "CHAT_ID") not in (None, ""):
        chat = find_chat(ctx.portal, ci_get(params, "CHAT_ID"))
    elif ci_get(params, "DIALOG_ID") not in (None, ""):
        chat = find_chat(ctx.portal, ci_get(params, "DIALOG_ID"))
    elif ci_get(params, "SESSION_ID") not in (None, ""):
        wanted = str(ci_get(params, "SESSION_ID"))
        chat = next((c for c in ctx.portal.chats.values() if any(str(s["id"]) == wanted for s in c["sessions"])), None)
    elif ci_get(params, "USER_CODE") not in (None, ""):
        code = str(ci_get(params, "USER_CODE")).removeprefix("imol|")
        chat = next((c for c in ctx.portal.chats.values() if c["entity_id"] == code), None)
    else:
        raise RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty", 400)
    if chat is None:
        raise RestError("ACCESS_DENIED", "You do not have access to the specified dialog", 403)
    return chat


@method("imopenlines.dialog.get")
def dialog_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """The chat of an Open Lines dialog (+ sandbox extras: its current session and whether it is closed)."""
    with ctx.state.lock:
        chat = _chat_by_params(ctx, params)
        session = _session(chat)
        return {
            "avatar": "",
            "color": "#4ba984",
            "date_create": _now_iso(chat["created"]),
            "dialog_id": chat["dialog_id"],
            "entity_data_1": _entity_data_1(chat),
            "entity_data_2": _entity_data_2(chat),
            "entity_data_3": "",
            "entity_id": chat["entity_id"],
            "entity_type": "LINES",
            "extranet": False,
            "id": chat["chat_id"],
            "manager_list": [],
            "message_type": "L",
            "name": f"{chat['client']['name']} - {chat['line_name']}",
            "owner": session["operator_id"] or 0,
            "type": "lines",
            "session_id": session["id"],
            "session_closed": session["closed"] is not None,
        }


def _sender(author: str, author_id: int) -> str:
    return "0" if author == "system" else str(author_id)


@method("imopenlines.session.history.get")
def session_history(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Messages of one session (SESSION_ID; else the chat's last session): client, bot, operator, system."""
    with ctx.state.lock:
        if ci_get(params, "SESSION_ID") not in (None, ""):
            chat = _chat_by_params(ctx, {"SESSION_ID": ci_get(params, "SESSION_ID")})
            session_id = int(str(ci_get(params, "SESSION_ID")))
        else:
            chat = _chat_by_params(ctx, {"CHAT_ID": ci_get(params, "CHAT_ID")})
            session_id = _session(chat)["id"]
        wanted = [m for m in chat["messages"] if m["session_id"] == session_id]
        users: dict[str, Any] = {}
        for m in wanted:
            if m["author"] == "system":
                continue
            user = ctx.portal.find_user(m["author_id"])
            users[str(m["author_id"])] = {
                "id": m["author_id"],
                "name": chat["client"]["name"] if m["author"] == "client" else (user.full_name if user else ""),
                "bot": m["author"] == "bot",
                "connector": m["author"] == "client",
            }
        return {
            "chatId": chat["chat_id"],
            "canJoin": "Y",
            "canVoteHead": "Y",
            "sessionId": session_id,
            "sessionVoteHead": 0,
            "sessionCommentHead": None,
            "userId": chat["dialog_id"],
            "message": {
                str(m["id"]): {
                    "id": str(m["id"]),
                    "chatid": str(chat["chat_id"]),
                    "senderid": _sender(m["author"], m["author_id"]),
                    "recipientid": chat["dialog_id"],
                    "date": _now_iso(m["time"]),
                    "text": m["text"],
                    "textlegacy": m["text"],
                    "params": {},
                }
                for m in wanted
            },
            "usersMessage": {chat["dialog_id"]: [str(m["id"]) for m in wanted]},
            "users": users,
            "chat": {
                str(chat["chat_id"]): {"id": chat["chat_id"], "entityId": chat["entity_id"], "entityType": "LINES"}
            },
        }
