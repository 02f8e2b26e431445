"""Connect links over real HTTP (app under gunicorn beside the sandbox): Yandex for the portal and for one
employee, amoCRM for the operator. A link works once, briefly, shows where the account goes before anything
happens, and only the browser that opened it can finish (issue 7 finding 2, issue 8 §2)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from database import audit_log, connect_links, credentials
from scripts.stack import Stack
from tests.integration.helpers import (
    app_db,
    boot_data,
    frame_post,
    mint,
    open_connect_link,
    portal_info,
    press_connect,
)

CYRILLIC = re.compile("[а-яА-ЯёЁ]")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Sandbox (2 portals, both installed) + the app under gunicorn, shared by the module."""
    tmp = tmp_path_factory.mktemp("connect")
    running = Stack(database_path=str(tmp / "connect.db"), portals=2, log_dir=tmp)
    for name in ("portal1", "portal2"):
        assert (
            running.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)["status"] == 200
        )
    yield running
    running.stop()


def rows(stack, table, *where) -> list[dict]:
    """Rows of one of the app's tables."""
    db = app_db(stack)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where).order_by(table.c.id))]
    finally:
        db.dispose()


def update(stack, table, where, **values) -> None:
    """Change rows of the app's database (to age a link without waiting)."""
    db = app_db(stack)
    try:
        with db.write() as conn:
            conn.execute(sa.update(table).where(where).values(**values))
    finally:
        db.dispose()


def session_of(stack, portal: str, user_id: int) -> str:
    """The bearer token of a user who opened the app in a sandbox portal."""
    info = portal_info(stack, portal)
    page = frame_post(stack, mint(stack, portal=portal, user_id=user_id), application_token=info["application_token"])
    assert page.status_code == 200, page.text
    return boot_data(page.text)["token"]


def api(stack, method: str, path: str, bearer: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{stack.app_url}{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=30, **kwargs
    )


def start_yandex(stack, bearer: str, **body) -> str:
    """POST /api/integrations/yandex/connect → the start URL."""
    response = api(stack, "POST", "/api/integrations/yandex/connect", bearer, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 120
    return response.json()["url"]


def ticket_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["ticket"][0]


def link_row(stack, url: str) -> dict:
    from models.security import token_hash

    [row] = rows(stack, connect_links, connect_links.c.ticket_hash == token_hash(ticket_of(url)))
    return row


def yandex_creds(stack, *where) -> list[dict]:
    return rows(stack, credentials, credentials.c.provider == "yandex", *where)


@pytest.fixture(scope="module")
def admin1(stack) -> str:
    return session_of(stack, "portal1", 1)


@pytest.fixture(scope="module")
def employee1(stack) -> str:
    return session_of(stack, "portal1", 2)


# ---- the confirmation page ---------------------------------------------------------------------------------


def test_the_start_page_names_the_portal_and_user_and_waits_for_connect(stack, admin1):
    url = start_yandex(stack, admin1)
    before = yandex_creds(stack)
    _session, page = open_connect_link(url)
    assert page.status_code == 200 and 'data-testid="connect-page"' in page.text
    domain = portal_info(stack, "portal1")["domain"]
    assert f'data-testid="connect-domain">{domain}</dd>' in page.text
    assert 'data-testid="connect-user">Иван Петров (ID 1)</dd>' in page.text
    assert 'data-testid="connect-scope">для всего портала</dd>' in page.text
    assert '<form method="post" action="/auth/yandex/start">' in page.text
    assert "<script" not in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
    yandex = urlsplit(stack.sandbox["yandex_oauth"])
    assert f"form-action 'self' {yandex.scheme}://{yandex.netloc};" in csp, "the form posts here, then goes to Yandex"
    assert "Location" not in page.headers, "no redirect to Yandex before the button"
    assert yandex_creds(stack) == before
    assert link_row(stack, url)["stage"] == "opened"


def test_the_start_page_speaks_english_when_the_link_was_made_in_english(stack, admin1):
    url = start_yandex(stack, admin1, lang="en")
    _session, page = open_connect_link(url)
    assert page.status_code == 200
    assert '<html lang="en">' in page.text and ">Connect</button>" in page.text
    assert 'data-testid="connect-scope">for the whole portal</dd>' in page.text
    text_outside_names = page.text.replace("Иван Петров", "")
    assert not CYRILLIC.search(text_outside_names), "no Russian UI text on the English page"


# ---- single use, short life, one browser --------------------------------------------------------------------


def test_a_ticket_opened_twice_is_refused_the_second_time(stack, admin1):
    url = start_yandex(stack, admin1)
    _first, page = open_connect_link(url)
    assert page.status_code == 200
    _second, again = open_connect_link(url)  # another browser (the victim's) with the same link
    assert again.status_code == 400 and 'data-testid="error-page"' in again.text
    assert "уже использована" in again.text
    assert "connect-button" not in again.text and "yandex_connect_nonce" not in again.headers.get("Set-Cookie", "")


def test_a_ticket_older_than_120_seconds_is_refused(stack, admin1):
    url = start_yandex(stack, admin1)
    row = link_row(stack, url)
    assert row["expires_at"] - row["created_at"] == 120
    update(
        stack,
        connect_links,
        connect_links.c.id == row["id"],
        created_at=row["created_at"] - 121,
        expires_at=row["expires_at"] - 121,
    )
    _session, page = open_connect_link(url)
    assert page.status_code == 400 and "истёк" in page.text
    assert link_row(stack, url)["stage"] == "issued", "an expired link is not spent"


@pytest.mark.parametrize("ticket", ["", "garbage", "x" * 300])
def test_an_unknown_ticket_is_refused(stack, ticket):
    page = requests.get(f"{stack.app_url}/auth/yandex/start", params={"ticket": ticket}, timeout=30)
    assert page.status_code == 400 and "недействительна" in page.text


def test_connect_pressed_in_another_browser_is_refused(stack, admin1):
    url = start_yandex(stack, admin1)
    _session, page = open_connect_link(url)
    assert page.status_code == 200
    forged = requests.post(
        f"{stack.app_url}/auth/yandex/start", data={"ticket": ticket_of(url)}, timeout=30, allow_redirects=False
    )
    assert forged.status_code == 400 and "другом браузере" in forged.text
    assert link_row(stack, url)["stage"] == "opened"


def test_the_callback_in_another_browser_is_refused_and_the_right_one_still_finishes(stack, admin1):
    api(stack, "DELETE", "/api/integrations/yandex", admin1)
    url = start_yandex(stack, admin1)
    session, page = open_connect_link(url)
    sent = session.post(
        f"{stack.app_url}/auth/yandex/start", data={"ticket": ticket_of(url)}, timeout=30, allow_redirects=False
    )
    assert sent.status_code == 303
    consent = requests.get(sent.headers["Location"], timeout=30, allow_redirects=False)
    callback = consent.headers["Location"]
    assert callback.startswith(f"{stack.app_url}/auth/yandex/callback?")
    stolen = requests.get(callback, timeout=30)  # no nonce cookie: another browser
    assert stolen.status_code == 400 and "другом браузере" in stolen.text
    assert yandex_creds(stack, credentials.c.subject == "account") == []
    finished = session.get(callback, timeout=30)
    assert finished.status_code == 200 and "Яндекс подключён" in finished.text
    assert len(yandex_creds(stack, credentials.c.subject == "account")) == 1
    assert link_row(stack, url)["stage"] == "done"


def test_a_replayed_callback_is_refused(stack, admin1):
    url = start_yandex(stack, admin1)
    session, page = open_connect_link(url)
    nonce = session.cookies["yandex_connect_nonce"]
    done = press_connect(session, page)
    assert done.status_code == 200
    [cred] = yandex_creds(stack, credentials.c.subject == "account")
    again = requests.get(done.url, cookies={"yandex_connect_nonce": nonce}, timeout=30)  # the same browser, again
    assert again.status_code == 400 and "уже использована" in again.text
    [after] = yandex_creds(stack, credentials.c.subject == "account")
    assert after["version"] == cred["version"], "the replay stored nothing"


def test_the_callback_with_an_error_from_yandex_is_a_refusal_page(stack, admin1):
    url = start_yandex(stack, admin1)
    session, page = open_connect_link(url)
    sent = session.post(
        f"{stack.app_url}/auth/yandex/start", data={"ticket": ticket_of(url)}, timeout=30, allow_redirects=False
    )
    state = parse_qs(urlsplit(sent.headers["Location"]).query)["state"][0]
    denied = session.get(
        f"{stack.app_url}/auth/yandex/callback",
        params={"error": "access_denied", "error_description": "<b>spoof</b>", "state": state},
        timeout=30,
    )
    assert denied.status_code == 400 and "Яндекс не дал доступ" in denied.text and "spoof" not in denied.text


# ---- who may start what ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 403, "forbidden"),
        ({"scope": "portal"}, 403, "forbidden"),
        ({"scope": "everyone"}, 400, "bad_scope"),
        ({"scope": ["personal"]}, 400, "bad_scope"),
    ],
)
def test_employees_start_only_personal_connections(stack, employee1, body, status, error):
    before = len(rows(stack, connect_links))
    response = api(stack, "POST", "/api/integrations/yandex/connect", employee1, json=body)
    assert response.status_code == status and response.json()["error"] == error
    assert len(rows(stack, connect_links)) == before


def test_employee_cannot_disconnect_the_portal_account(stack, employee1):
    response = api(stack, "DELETE", "/api/integrations/yandex", employee1)
    assert response.status_code == 403
    assert api(stack, "DELETE", "/api/integrations/yandex?scope=nope", employee1).status_code == 400


# ---- personal Yandex accounts ------------------------------------------------------------------------------------


def connect_personal(stack, bearer: str, login: str) -> requests.Response:
    url = start_yandex(stack, bearer, scope="personal")
    session, page = open_connect_link(url)
    assert page.status_code == 200, page.text
    return press_connect(session, page, login_hint=login)


def test_an_employee_connects_and_disconnects_their_own_account(stack, admin1, employee1):
    portal_before = api(stack, "GET", "/api/integrations", employee1).json()["yandex"]
    url = start_yandex(stack, employee1, scope="personal")
    session, page = open_connect_link(url)
    assert 'data-testid="connect-user">Мария Смирнова (ID 2)</dd>' in page.text
    assert "личное, только для этого пользователя" in page.text and "Подключение вашего аккаунта" in page.text
    done = press_connect(session, page, login_hint="maria.personal")
    assert done.status_code == 200 and "Ваш аккаунт maria.personal@yandex.ru подключён" in done.text
    link = link_row(stack, url)
    assert (link["scope"], link["user_id"], link["stage"]) == ("personal", 2, "done")
    [cred] = yandex_creds(stack, credentials.c.subject == "user:2")
    assert (cred["portal_id"], cred["user_id"], cred["status"]) == (link["portal_id"], 2, "active")
    assert cred["account"].isdigit() and cred["label"] == "maria.personal@yandex.ru"
    seen = api(stack, "GET", "/api/integrations", employee1).json()
    assert seen["yandex_personal"] == {"connected": True, "account": "maria.personal@yandex.ru", "status": "active"}
    assert seen["yandex"] == portal_before, "the portal's account is untouched"
    assert api(stack, "GET", "/api/integrations", admin1).json()["yandex_personal"]["connected"] is False

    # The admin disconnecting the portal's account leaves employees' own accounts alone.
    assert api(stack, "DELETE", "/api/integrations/yandex", admin1).status_code == 200
    assert len(yandex_creds(stack, credentials.c.subject == "user:2")) == 1

    gone = api(stack, "DELETE", "/api/integrations/yandex?scope=personal", employee1)
    assert gone.status_code == 200 and gone.json()["yandex_personal"]["connected"] is False
    assert yandex_creds(stack, credentials.c.subject == "user:2") == []
    assert rows(stack, audit_log, audit_log.c.action == "yandex_personal_disconnected")


def test_one_yandex_account_is_personal_to_one_user_of_one_portal(stack, admin1, employee1):
    assert connect_personal(stack, employee1, "shared.account").status_code == 200
    [held] = yandex_creds(stack, credentials.c.label == "shared.account@yandex.ru")
    taken_here = connect_personal(stack, admin1, "shared.account")
    assert taken_here.status_code == 409 and "личный аккаунт другого пользователя" in taken_here.text
    other_portal_user = session_of(stack, "portal2", 2)
    taken_there = connect_personal(stack, other_portal_user, "shared.account")
    assert taken_there.status_code == 409
    assert yandex_creds(stack, credentials.c.label == "shared.account@yandex.ru") == [held]
    # Reconnecting the same account for the same user is fine (a fresh pair, same row).
    again = connect_personal(stack, employee1, "shared.account")
    assert again.status_code == 200
    [after] = yandex_creds(stack, credentials.c.label == "shared.account@yandex.ru")
    assert (after["id"], after["version"]) == (held["id"], held["version"] + 1)
    api(stack, "DELETE", "/api/integrations/yandex?scope=personal", employee1)


def test_a_personal_account_replaces_the_users_previous_one(stack, employee1):
    assert connect_personal(stack, employee1, "first.own").status_code == 200
    assert connect_personal(stack, employee1, "second.own").status_code == 200
    assert [c["label"] for c in yandex_creds(stack, credentials.c.subject == "user:2")] == ["second.own@yandex.ru"]
    api(stack, "DELETE", "/api/integrations/yandex?scope=personal", employee1)


# ---- amoCRM ------------------------------------------------------------------------------------------------------


def start_amocrm(stack) -> str:
    response = requests.post(
        f"{stack.app_url}/api/admin/amocrm/authorize", timeout=30, headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 120
    return response.json()["url"]


def test_amocrm_state_replay_registers_nothing_more(stack):
    stack.control("POST", "/_sandbox/amocrm/accounts", {"subdomain": "sandboxcrm"})
    url = start_amocrm(stack)
    session, page = open_connect_link(url)
    assert page.status_code == 200 and 'data-testid="connect-scope">для приложения</dd>' in page.text
    nonce = session.cookies["amocrm_connect_nonce"]
    done = press_connect(session, page)
    assert done.status_code == 200 and "amoCRM подключён" in done.text
    [cred] = rows(stack, credentials, credentials.c.provider == "amocrm")
    # The same state again, even with the same browser's cookie: refused, nothing re-registered.
    replay = requests.get(done.url, cookies={"amocrm_connect_nonce": nonce}, timeout=30)
    assert replay.status_code == 400 and "уже использована" in replay.text
    assert rows(stack, credentials, credentials.c.provider == "amocrm") == [cred]


def test_amocrm_callback_in_another_browser_is_refused(stack):
    url = start_amocrm(stack)
    session, _page = open_connect_link(url)
    sent = session.post(
        f"{stack.app_url}/auth/amocrm/start", data={"ticket": ticket_of(url)}, timeout=30, allow_redirects=False
    )
    assert sent.status_code == 303
    consent = requests.get(sent.headers["Location"], timeout=30, allow_redirects=False)
    before = rows(stack, credentials, credentials.c.provider == "amocrm")
    stolen = requests.get(consent.headers["Location"], timeout=30)
    assert stolen.status_code == 400 and "другом браузере" in stolen.text
    assert rows(stack, credentials, credentials.c.provider == "amocrm") == before


def test_amocrm_ticket_works_once(stack):
    url = start_amocrm(stack)
    assert open_connect_link(url)[1].status_code == 200
    assert open_connect_link(url)[1].status_code == 400
