"""Helpers for tests against the live stack: the app's database, forged requests, token minting."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import urlencode, urljoin

import requests
import sqlalchemy as sa

from database import Database, credentials, make_url, portals
from tests.conftest import load_fixture


def app_db(stack, database_url: str = "") -> Database:
    """A connection to the live app's database (its SQLite file, or `database_url`) to check state."""
    return Database(make_url(database_url, stack.database_path), pool_size=2)


def table_rows(stack, table, *where, database_url: str = "") -> list[dict]:
    """The rows of a table (in id order), optionally filtered."""
    db = app_db(stack, database_url)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where).order_by(table.c.id))]
    finally:
        db.dispose()


def portal_rows(stack, database_url: str = "") -> list[dict]:
    """Every portal row."""
    return table_rows(stack, portals, database_url=database_url)


def credential_rows(stack, database_url: str = "") -> list[dict]:
    """Every credential row (tokens stay encrypted)."""
    return table_rows(stack, credentials, database_url=database_url)


def update_rows(stack, table, *where, **values) -> int:
    """Change rows of the live app's database behind its back (expire a token, break a row…)."""
    db = app_db(stack)
    try:
        with db.write() as conn:
            return conn.execute(sa.update(table).where(*where).values(**values)).rowcount
    finally:
        db.dispose()


def rest_calls(stack, name: str = "portal1") -> list[str]:
    """The REST methods the app called on a sandbox portal since the last clear_calls (batch parts included)."""
    return [c["method"] for c in stack.control("GET", f"/_sandbox/portals/{name}/calls", expect=200)]


def clear_calls(stack, name: str = "portal1") -> None:
    """Forget the sandbox portal's recorded REST calls."""
    stack.control("DELETE", f"/_sandbox/portals/{name}/calls", expect=200)


def run_tasks(stack) -> requests.Response:
    """The cron's POST /tasks/refresh."""
    return requests.post(
        f"{stack.app_url}/tasks/refresh", headers={"X-Cron-Token": stack.env["CRON_TOKEN"]}, timeout=60
    )


def event_form(stack, fixture: str, info: dict, **overrides) -> dict:
    """A documented event form (`event-*.json`) aimed at a sandbox portal with its application token."""
    form = dict(load_fixture(fixture)["payload"])
    form.update(
        {
            "auth[member_id]": info["member_id"],
            "auth[domain]": info["domain"],
            "auth[application_token]": info["application_token"],
        }
    )
    form.update(overrides)
    return form


def mint(stack, portal="portal1", user_id=1, **extra) -> dict:
    """A fresh Bitrix24 token pair from the sandbox OAuth server."""
    body = {"provider": "bitrix24", "portal": portal, "user_id": user_id, **extra}
    return stack.control("POST", "/_sandbox/oauth/tokens", body, expect=200)["tokens"][0]


def portal_info(stack, name="portal1") -> dict:
    """The sandbox's view of a portal (domain, member_id, application_token, …)."""
    return stack.control("GET", f"/_sandbox/portals/{name}", expect=200)


def install_event_form(stack, tokens: dict, *, application_token: str, **overrides) -> dict:
    """The ONAPPINSTALL form built on the documentation's fixture, with live values."""
    form = dict(load_fixture("event-ONAPPINSTALL.json")["payload"])
    form.update(
        {
            "auth[domain]": tokens["domain"],
            "auth[access_token]": tokens["access_token"],
            "auth[refresh_token]": tokens["refresh_token"],
            "auth[server_endpoint]": tokens["server_endpoint"],
            "auth[client_endpoint]": tokens["client_endpoint"],
            "auth[member_id]": tokens["member_id"],
            "auth[application_token]": application_token,
        }
    )
    form.update(overrides)
    return form


def frame_post(stack, tokens: dict, *, application_token: str, **overrides) -> requests.Response:
    """The iframe POST Bitrix24 sends when a user opens the app (§1.2 query/body split)."""
    query = {"DOMAIN": tokens["domain"], "PROTOCOL": "0", "LANG": "ru", "APP_SID": "sid123"}
    body = {
        "AUTH_ID": tokens["access_token"],
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": tokens["server_endpoint"],
        "APPLICATION_TOKEN": application_token,
        "member_id": tokens["member_id"],
        "status": "L",
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": "{}",
    }
    for key, value in overrides.items():
        (query if key in query else body)[key] = value
    return requests.post(f"{stack.app_url}/", params=query, data=body, timeout=30)


def boot_data(html: str) -> dict:
    """The JSON boot block of the app page."""
    match = re.search(r'<script id="boot" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page has no boot data"
    return json.loads(match.group(1))


def open_connect_link(url: str, session: requests.Session | None = None) -> tuple[requests.Session, requests.Response]:
    """Open a connect link (Yandex, amoCRM) like a browser: the confirmation page; the session keeps its cookie."""
    session = session or requests.Session()
    return session, session.get(url, timeout=30)


def press_connect(session: requests.Session, page: requests.Response, **consent_params) -> requests.Response:
    """Press "Connect" on a confirmation page: the POST answers 303 to the provider, whose consent (the sandbox
    approves at once, as `login_hint` names) redirects to the app's callback; returns the callback's page."""
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    ticket = re.search(r'name="ticket" value="([^"]+)"', page.text)
    assert action and ticket, "not a confirmation page"
    sent = session.post(
        urljoin(page.url, html.unescape(action.group(1))),
        data={"ticket": html.unescape(ticket.group(1))},
        allow_redirects=False,
        timeout=30,
    )
    assert sent.status_code == 303, sent.text
    consent = sent.headers["Location"]
    if consent_params:
        consent += "&" + urlencode(consent_params)
    return session.get(consent, timeout=30)
