"""Reading bot events (spec §5): the dedup key, what the inbox keeps, and the fields the bot uses.

Payloads are the unflattened forms (nested dicts of strings). The inbox never keeps tokens: the top-level
`auth` block and the bot's own OAuth block under `data[BOT]` are dropped before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from models import forms

JOIN = "ONIMBOTJOINCHAT"
MESSAGE = "ONIMBOTMESSAGEADD"
BOT_DELETE = "ONIMBOTDELETE"
# Bound with event.bind as "OnSessionFinish"; Bitrix24 posts event names in capitals.
SESSION_FINISH = "ONSESSIONFINISH"
BOT_EVENTS = (JOIN, MESSAGE, BOT_DELETE, SESSION_FINISH)

_CHAT = re.compile(r"^chat(\d{1,18})$")
# What the inbox keeps of PARAMS when the portal's bot is switched off: enough to hand the chat over.
_ROUTING_PARAMS = (
    "CHAT_ID",
    "TO_CHAT_ID",
    "DIALOG_ID",
    "CHAT_TYPE",
    "MESSAGE_TYPE",
    "CHAT_ENTITY_TYPE",
    "CHAT_ENTITY_ID",
    "LANGUAGE",
    "MESSAGE_ID",
    "BOT_ID",
)


def _data(payload: dict) -> dict:
    data = payload.get("data")
    return data if isinstance(data, dict) else {}


def _strip_bot(data: dict) -> dict:
    """data without the bot's OAuth blocks, keeping the bot ids."""
    out = {k: v for k, v in data.items() if k != "BOT"}
    bots = data.get("BOT")
    if isinstance(bots, dict):
        out["BOT_IDS"] = sorted(str(k)[:20] for k in bots)[:5]
    return out


def event_key(event: str, payload: dict) -> str:
    """The inbox's dedup key: the message id when there is one, else a digest of the event's data."""
    data = _data(payload)
    params = data.get("PARAMS") if isinstance(data.get("PARAMS"), dict) else {}
    message_id = forms.text(params, "MESSAGE_ID", 20)
    if event == MESSAGE and message_id.isdigit():
        return f"{event}:{message_id}"
    # The bot block carries tokens minted per delivery; the rest of the data and the event's time are what was
    # delivered (the time tells a later join of the same chat, a new session, from a second copy).
    digest = hashlib.sha256(
        json.dumps([forms.text(payload, "ts", 20), _strip_bot(data)], sort_keys=True, ensure_ascii=True).encode()
    ).hexdigest()
    return f"{event}:{digest[:64]}"


def inbox_payload(event: str, payload: dict, *, keep_content: bool) -> dict:
    """What the inbox stores: the event, its ts and data without tokens (only routing when switched off)."""
    data = _strip_bot(_data(payload))
    if not keep_content and event != BOT_DELETE:  # a deleted bot's id is no one's personal data
        params = data.get("PARAMS") if isinstance(data.get("PARAMS"), dict) else {}
        data = {"PARAMS": {k: params[k] for k in _ROUTING_PARAMS if isinstance(params.get(k), str)}}
        if event == SESSION_FINISH:
            data = {}
    return {"event": event, "ts": forms.text(payload, "ts", 20), "data": data}


@dataclass(frozen=True)
class ChatEvent:
    """The fields of an ONIMBOT* event the bot acts on."""

    event: str
    chat_id: int | None
    dialog_id: str
    entity_type: str
    chat_type: str
    connector: str | None
    line_id: str | None
    entity_id: str
    crm_bindings: dict[str, int]
    client_id: str
    client_name: str
    language: str
    message_id: str
    text: str
    author_id: str
    bot_id: str
    ts: int | None

    @property
    def is_lines(self) -> bool:
        """An Open Lines dialog (the only chats the bot intercepts)."""
        return self.entity_type == "LINES"

    @property
    def is_private(self) -> bool:
        """A one-to-one chat of an employee with the bot."""
        return not self.entity_type and (self.chat_type == "P" or self.dialog_id.isdigit())


def crm_bindings(raw: str) -> dict[str, int]:
    """CHAT_ENTITY_DATA_2 `LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0` → {"LEAD": 1209} (zeros dropped)."""
    parts = raw.split("|") if raw else []
    out: dict[str, int] = {}
    for name, value in zip(parts[0::2], parts[1::2], strict=False):
        if re.fullmatch(r"[A-Z_]{1,32}", name) and value.isdigit() and int(value) > 0:
            out[name] = int(value)
    return out


def chat_event(stored: dict) -> ChatEvent:
    """Read an inbox payload (see inbox_payload) as a ChatEvent."""
    data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
    params = data.get("PARAMS") if isinstance(data.get("PARAMS"), dict) else {}
    user = data.get("USER") if isinstance(data.get("USER"), dict) else {}
    dialog_id = forms.text(params, "DIALOG_ID", 64)
    chat_id = None
    for candidate in (forms.text(params, "CHAT_ID", 20), forms.text(params, "TO_CHAT_ID", 20)):
        if candidate.isdigit() and int(candidate) > 0:
            chat_id = int(candidate)
            break
    match = _CHAT.match(dialog_id)
    if chat_id is None and match:
        chat_id = int(match.group(1))
    entity_id = forms.text(params, "CHAT_ENTITY_ID", 255)
    parts = entity_id.split("|")
    connector = parts[0][:64] if len(parts) >= 2 and parts[0] else None
    line_id = parts[1][:32] if len(parts) >= 2 and parts[1].isdigit() else None
    name = forms.text(user, "NAME", 255) or " ".join(
        p for p in (forms.text(user, "FIRST_NAME", 120), forms.text(user, "LAST_NAME", 120)) if p
    )
    bot_ids = data.get("BOT_IDS") if isinstance(data.get("BOT_IDS"), list) else []
    ts = forms.integer(stored, "ts")
    return ChatEvent(
        event=str(stored.get("event") or ""),
        chat_id=chat_id,
        dialog_id=dialog_id or (f"chat{chat_id}" if chat_id else ""),
        entity_type=forms.text(params, "CHAT_ENTITY_TYPE", 32).upper(),
        chat_type=forms.text(params, "CHAT_TYPE", 4).upper() or forms.text(params, "MESSAGE_TYPE", 4).upper(),
        connector=connector,
        line_id=line_id,
        entity_id=entity_id,
        crm_bindings=crm_bindings(forms.text(params, "CHAT_ENTITY_DATA_2", 512)),
        client_id=forms.text(user, "ID", 64) or forms.text(params, "FROM_USER_ID", 64),
        client_name=name,
        language=(forms.text(params, "LANGUAGE", 8) or "").lower(),
        message_id=forms.text(params, "MESSAGE_ID", 32),
        text=forms.text(params, "MESSAGE", 20000),
        author_id=forms.text(params, "AUTHOR_ID", 64) or forms.text(params, "FROM_USER_ID", 64),
        bot_id=forms.text(params, "BOT_ID", 20) or (str(bot_ids[0]) if bot_ids else ""),
        ts=ts,
    )


def find_value(tree, *names: str) -> str:
    """The first string value under any of `names` (case-insensitive) anywhere in a nested payload."""
    wanted = {n.upper() for n in names}
    stack = [tree]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key).upper() in wanted and isinstance(value, str | int) and str(value).strip():
                    return str(value).strip()[:64]
            stack.extend(v for v in node.values() if isinstance(v, dict))
    return ""


def session_finish_ids(stored: dict) -> tuple[int | None, str | None]:
    """(chat id, session id) of an OnSessionFinish: `data[chat][id]`, `data[session][id]` (flat CHAT_ID and
    SESSION_ID also read); `data[connector][chat_id]` is the external channel's chat, not ours."""
    data = stored.get("data") if isinstance(stored.get("data"), dict) else {}
    chat = data.get("chat") if isinstance(data.get("chat"), dict) else {}
    session = data.get("session") if isinstance(data.get("session"), dict) else {}
    chat_id = forms.text(chat, "id", 20) or forms.text(data, "CHAT_ID", 20)
    session_id = forms.text(session, "id", 20) or forms.text(data, "SESSION_ID", 20)
    return (int(chat_id) if chat_id.isdigit() else None), (session_id if session_id.isdigit() else None)
