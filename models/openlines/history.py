"""Reading `imopenlines.session.history.get` answers into messages to store (whose words, when, what)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from models import forms


@dataclass(frozen=True)
class HistoryMessage:
    """One message of a finished session."""

    message_id: str
    author_kind: str  # client | operator | bot | system
    author_id: str
    text: str
    sent_at: int


def _timestamp(raw, default: int) -> int:
    if isinstance(raw, int | float):
        return int(raw)
    if isinstance(raw, str) and raw:
        if raw.isdigit():
            return int(raw)
        try:
            return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return default
    return default


def parse_history(result, *, client_id: str, bot_id: str, default_ts: int) -> list[HistoryMessage]:
    """Messages of the answer, oldest first, each classified by who wrote it."""
    if not isinstance(result, dict):
        return []
    raw = result.get("message") or result.get("messages") or {}
    items = list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    users = result.get("users") if isinstance(result.get("users"), dict) else {}
    out: list[HistoryMessage] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        message_id = str(item.get("id") or item.get("ID") or "").strip()[:32]
        if not message_id:
            continue
        author = str(
            item.get("senderid") or item.get("author_id") or item.get("authorId") or item.get("AUTHOR_ID") or "0"
        ).strip()[:64]
        user = users.get(author) if isinstance(users.get(author), dict) else {}
        if author in ("", "0") or str(item.get("system") or "").upper() == "Y":
            kind = "system"
        elif bot_id and author == bot_id or user.get("bot") in (True, "Y"):
            kind = "bot"
        elif client_id and author == client_id or user.get("connector") in (True, "Y"):
            kind = "client"
        else:
            kind = "operator"
        text = item.get("text") if isinstance(item.get("text"), str) else forms.text(item, "MESSAGE", 20000)
        out.append(
            HistoryMessage(
                message_id,
                kind,
                author,
                (text or "")[:20000],
                _timestamp(item.get("date") or item.get("DATE_CREATE"), default_ts),
            )
        )
    out.sort(key=lambda m: (m.sent_at, int(m.message_id) if m.message_id.isdigit() else 0))
    return out
