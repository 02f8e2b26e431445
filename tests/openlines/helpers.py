"""Helpers of the Open Lines bot tests: portals in the database, a recording fake of portal REST, events
built on the documentation's payloads (../shared/fixtures/examples) with live values."""

from __future__ import annotations

import secrets
import threading
import time

import sqlalchemy as sa

from database import bot_handoffs, bot_inbox, dialog_messages, dialogs, now, portals
from models.bitrix24 import Bitrix24Error, Bitrix24Unavailable, RestResult
from models.security import token_hash
from models.vault import PORTAL_SUBJECT, TokenSet
from tests.conftest import load_fixture, make_config


class FakeRest:
    """Portal REST as the bot sees it: records every call per portal, plays Open Lines' answers and faults."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        self.down: str | None = None  # "503" or "timeout": every call fails that way
        self.delay = 0.0
        self.with_operator: set[tuple[str, int]] = set()
        self.history: dict[tuple[str, int], dict] = {}
        self.dialog_info: dict[tuple[str, int], dict] = {}
        self.lines = [
            {"ID": "1", "LINE_NAME": "Site chat", "ACTIVE": "Y", "WELCOME_BOT_ENABLE": "N"},
            {"ID": "2", "LINE_NAME": "Telegram", "ACTIVE": "Y", "WELCOME_BOT_ENABLE": "N"},
        ]
        self.users = [{"ID": "1", "NAME": "Anna", "LAST_NAME": "Admin", "WORK_POSITION": "CEO"}]

    def of(self, member_id: str, method: str | None = None) -> list[dict]:
        """Params of the calls made on one portal (of one method)."""
        return [p for m, meth, p in self.calls if m == member_id and (method is None or meth == method)]

    def call(self, member_id: str, method: str, params: dict):
        """Answer one REST call as the portal would (or fail as configured)."""
        if self.delay:
            time.sleep(self.delay)
        if self.down == "503":
            raise Bitrix24Unavailable("http_503")
        if self.down == "timeout":
            raise Bitrix24Unavailable("network_error", "ReadTimeout")
        with self.lock:
            self.calls.append((member_id, method, dict(params)))
            if method.startswith("imopenlines.bot.session."):
                key = (member_id, int(params["CHAT_ID"]))
                if key in self.with_operator:
                    raise Bitrix24Error("WRONG_CHAT", "Operator is not a bot", 400)
                self.with_operator.add(key)
                return True
            if method == "imbot.message.add":
                return len(self.calls)
            if method == "imopenlines.session.history.get":
                return self.history.get((member_id, int(params["CHAT_ID"])), {"message": {}})
            if method == "imopenlines.dialog.get":
                return self.dialog_info.get((member_id, int(params["CHAT_ID"])), {})
            if method == "imopenlines.config.list.get":
                return self.lines
            if method == "imopenlines.config.update":
                return True
            if method == "user.get":
                return self.users
            if method == "imbot.unregister":
                return True
        raise Bitrix24Error("ERROR_METHOD_NOT_FOUND", method, 404)


class FakeClient:
    """Stands in for models.bitrix24.PortalClient on one portal."""

    def __init__(self, rest: FakeRest, member_id: str):
        self.rest = rest
        self.member_id = member_id

    def call(self, method: str, params: dict | None = None) -> RestResult:
        """PortalClient.call."""
        return RestResult(self.rest.call(self.member_id, method, params or {}))

    def list_all(self, method: str, params: dict | None = None, max_items: int = 5000) -> list:
        """PortalClient.list_all (one page)."""
        return list(self.call(method, params).result)


def bot_config(tmp_path, **overrides) -> dict:
    """The testing config with the worker thread off (tests run the inbox themselves) unless asked."""
    return make_config(tmp_path, **{"BOT_BACKGROUND_WORKER": False, "BOT_BACKOFF_SECONDS": 0.0, **overrides})


def patch_rest(services, rest: FakeRest) -> None:
    """Make the bot's REST calls go to the fake."""
    services.portals.client = lambda portal, credential_id=None: FakeClient(rest, portal.member_id)


def make_portal(services, name: str = "p1", *, bot_id: int = 39, version: str = "1") -> dict:
    """An installed portal with a stored credential; returns its member_id and secrets."""
    member_id = secrets.token_hex(16)
    app_token = secrets.token_hex(16)
    api_token = None
    ts = now()
    with services.db.write() as conn:
        portal_id = conn.execute(
            sa.insert(portals).values(
                member_id=member_id,
                domain=f"{name}.bitrix24.test",
                client_endpoint=f"https://{name}.bitrix24.test/rest/",
                server_endpoint="https://oauth.bitrix.info/rest/",
                application_token_hash=token_hash(app_token),
                status="installed",
                bot_id=bot_id,
                version=version,
                installed_at=ts,
                updated_at=ts,
            )
        ).inserted_primary_key[0]
    services.vault.store(
        "bitrix24",
        member_id,
        PORTAL_SUBJECT,
        TokenSet("a" * 32, "r" * 32, ts + 3600, ts + 86400),
        portal_id=portal_id,
        reason="install",
    )
    api_token = services.portals.issue_admin_token(portal_id, actor="test")["token"]
    return {
        "id": portal_id,
        "member_id": member_id,
        "app_token": app_token,
        "api_token": api_token,
        "bot_id": bot_id,
        "name": name,
    }


def lines_event(
    portal: dict,
    event: str = "ONIMBOTMESSAGEADD",
    *,
    chat_id: int = 1775,
    message_id: int | None = None,
    text: str = "Hello, I need help",
    line_id: str = "1",
    client_id: str = "599",
    client_name: str = "Ivan Petrov",
    language: str = "ru",
    ts: int | None = None,
    application_token: str | None = None,
    crm: str = "LEAD|1209|COMPANY|0|CONTACT|0|DEAL|0",
) -> dict:
    """An Open Lines event form: the documented full envelope (group-chat fixture) with LINES parameters."""
    base = "event-ONIMBOTMESSAGEADD-group.json" if event == "ONIMBOTMESSAGEADD" else "event-ONIMBOTJOINCHAT-group.json"
    form = {k: v for k, v in load_fixture(base)["payload"].items()}
    old_bot = next(k.split("]")[1][1:] for k in form if k.startswith("data[BOT]["))
    form = {k.replace(f"data[BOT][{old_bot}]", f"data[BOT][{portal['bot_id']}]"): v for k, v in form.items()}
    lines = load_fixture("event-ONIMBOTMESSAGEADD-openlines.json")["payload"]
    form.update(
        {
            "event": event,
            "ts": str(ts if ts is not None else int(time.time())),
            "auth[member_id]": portal["member_id"],
            "auth[domain]": f"{portal['name']}.bitrix24.test",
            "auth[application_token]": portal["app_token"] if application_token is None else application_token,
            f"data[BOT][{portal['bot_id']}][BOT_ID]": str(portal["bot_id"]),
            "data[PARAMS][CHAT_ENTITY_TYPE]": lines["data[PARAMS][CHAT_ENTITY_TYPE]"],
            "data[PARAMS][CHAT_ENTITY_ID]": f"livechat|{line_id}|{chat_id + 100}|{client_id}",
            "data[PARAMS][CHAT_ENTITY_DATA_2]": crm,
            "data[PARAMS][CHAT_ID]": str(chat_id),
            "data[PARAMS][DIALOG_ID]": f"chat{chat_id}",
            "data[PARAMS][CHAT_TYPE]": "L",
            "data[PARAMS][LANGUAGE]": language,
            "data[PARAMS][BOT_ID]": str(portal["bot_id"]),
            "data[USER][ID]": client_id,
            "data[USER][NAME]": client_name,
            "data[USER][IS_CONNECTOR]": "Y",
        }
    )
    if event == "ONIMBOTMESSAGEADD":
        form.update(
            {
                "data[PARAMS][MESSAGE]": text,
                "data[PARAMS][MESSAGE_ID]": str(message_id or chat_id * 10),
                "data[PARAMS][FROM_USER_ID]": client_id,
                "data[PARAMS][AUTHOR_ID]": client_id,
                "data[PARAMS][TO_CHAT_ID]": str(chat_id),
            }
        )
        form = {k: v for k, v in form.items() if not k.startswith("data[PARAMS][MENTIONED_LIST]")}
    else:
        form["data[PARAMS][USER_ID]"] = client_id
    if application_token is not None and application_token == "":
        form.pop("auth[application_token]")
    return form


def private_event(portal: dict, *, language: str = "en", message_id: int = 84331) -> dict:
    """The documented private-chat ONIMBOTMESSAGEADD with this portal's auth."""
    form = dict(load_fixture("event-ONIMBOTMESSAGEADD-private.json")["payload"])
    form.update(
        {
            "ts": str(int(time.time())),
            "auth[member_id]": portal["member_id"],
            "auth[application_token]": portal["app_token"],
            "data[PARAMS][LANGUAGE]": language,
            "data[PARAMS][MESSAGE_ID]": str(message_id),
        }
    )
    return form


def count(services, table) -> int:
    """Rows in a table."""
    with services.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def rows(services, table, *where) -> list[dict]:
    """Rows of a table as dicts."""
    with services.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where))]


__all__ = [
    "FakeRest",
    "bot_handoffs",
    "bot_inbox",
    "count",
    "dialog_messages",
    "dialogs",
    "lines_event",
    "make_portal",
    "private_event",
    "rows",
]


def bot_lines_rows(services) -> list[dict]:
    """Every bot_lines row."""
    from database import bot_lines

    return rows(services, bot_lines)
