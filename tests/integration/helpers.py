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


def app_db(stack) -> Database:
    """A connection to the live app's SQLite database (to check state, not only responses)."""
    return Database(make_url("", stack.database_path), pool_size=2)


def portal_rows(stack) -> list[dict]:
    """Every portal row."""
    db = app_db(stack)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(portals))]
    finally:
        db.dispose()


def credential_rows(stack) -> list[dict]:
    """Every credential row (tokens stay encrypted)."""
    db = app_db(stack)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(credentials).order_by(credentials.c.id))]
    finally:
        db.dispose()


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
    form.update({
        "auth[domain]": tokens["domain"],
        "auth[access_token]": tokens["access_token"],
        "auth[refresh_token]": tokens["refresh_token"],
        "auth[server_endpoint]": tokens["server_endpoint"],
        "auth[client_endpoint]": tokens["client_endpoint"],
        "auth[member_id]": tokens["member_id"],
        "auth[application_token]": application_token,
    })
    form.update(overrides)
    return form


def frame_post(stack, tokens: dict, *, application_token: str, **overrides) -> requests.Response:
    """The iframe POST Bitrix24 sends when a user opens the app (§1.2 query/body split)."""
    query = {"DOMAIN": tokens["domain"], "PROTOCOL": "0", "LANG": "ru", "APP_SID": "sid123"}
    body = {
        "AUTH_ID": tokens["access_token"], "AUTH_EXPIRES": "3600", "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": tokens["server_endpoint"], "APPLICATION_TOKEN": application_token,
        "member_id": tokens["member_id"], "status": "L", "PLACEMENT": "DEFAULT", "PLACEMENT_OPTIONS": "{}",
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
    sent = session.post(urljoin(page.url, html.unescape(action.group(1))),
                        data={"ticket": html.unescape(ticket.group(1))}, allow_redirects=False, timeout=30)
    assert sent.status_code == 303, sent.text
    consent = sent.headers["Location"]
    if consent_params:
        consent += "&" + urlencode(consent_params)
    return session.get(consent, timeout=30)
