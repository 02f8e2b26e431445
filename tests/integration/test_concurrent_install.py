"""Finding 10: the installer page and ONAPPINSTALL arriving together on a first install both succeed and agree."""

import secrets
import threading

import pytest
import requests
import sqlalchemy as sa

from database import Database, make_url, portals
from tests.integration.helpers import credential_rows, install_event_form, mint, portal_rows

ROUNDS = 6


def installer_request(stack, tokens: dict, application_token: str) -> dict:
    """The installer page POST (§1.2: query DOMAIN/PROTOCOL/LANG, body AUTH_ID…)."""
    return {
        "params": {"DOMAIN": tokens["domain"], "PROTOCOL": "0", "LANG": "ru", "APP_SID": "sid"},
        "data": {
            "AUTH_ID": tokens["access_token"],
            "AUTH_EXPIRES": "3600",
            "REFRESH_ID": tokens["refresh_token"],
            "SERVER_ENDPOINT": tokens["server_endpoint"],
            "APPLICATION_TOKEN": application_token,
            "member_id": tokens["member_id"],
            "status": "L",
            "PLACEMENT": "DEFAULT",
        },
    }


def race(*requests_kwargs: dict) -> list[requests.Response]:
    """Send the requests at the same moment from one thread each."""
    barrier = threading.Barrier(len(requests_kwargs))
    answers: list = [None] * len(requests_kwargs)

    def send(index: int, kwargs: dict) -> None:
        barrier.wait(timeout=30)
        answers[index] = requests.post(timeout=60, **kwargs)

    threads = [threading.Thread(target=send, args=(i, kw)) for i, kw in enumerate(requests_kwargs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request):
    """The app's database for the race: its SQLite file, then PostgreSQL."""
    return request.getfixturevalue("pg_url") if request.param == "postgres" else ""


def test_installer_page_and_install_event_race_on_a_first_install(make_stack, database_url):
    extra = {"DATABASE_URL": database_url} if database_url else {}
    stack = make_stack(portals=ROUNDS, extra_app_env=extra)
    for round_no in range(1, ROUNDS + 1):
        portal = f"portal{round_no}"
        event_tokens, installer_tokens = mint(stack, portal=portal), mint(stack, portal=portal)
        application_token = secrets.token_hex(16)
        event = {
            "url": f"{stack.app_url}/install",
            "data": install_event_form(stack, event_tokens, application_token=application_token),
        }
        installer = dict(
            url=f"{stack.app_url}/install", **installer_request(stack, installer_tokens, application_token)
        )

        answers = race(event, installer)

        assert [a.status_code for a in answers] == [200, 200], [a.text[:300] for a in answers]
        rows = [r for r in portal_rows(stack, database_url) if r["member_id"] == event_tokens["member_id"]]
        assert [(r["status"], r["domain"]) for r in rows] == [("installed", event_tokens["domain"])]
        creds = [
            c
            for c in credential_rows(stack, database_url)
            if c["account"] == event_tokens["member_id"] and c["subject"] == "portal"
        ]
        assert [c["portal_id"] for c in creds] == [rows[0]["id"]]
    assert len(portal_rows(stack, database_url)) == ROUNDS


def test_database_errors_carry_no_sql_parameters(storage_config):
    """A failed statement's message must not quote its parameters (hashes, encrypted tokens) into a log."""
    db = Database(make_url(storage_config["DATABASE_URL"], storage_config["DATABASE_PATH"]), pool_size=2)
    try:
        db.upgrade()
        secret = "secret-" + secrets.token_hex(8)
        row = {
            "member_id": "m1",
            "domain": "d.example.com",
            "client_endpoint": "https://d.example.com/rest/",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "application_token_hash": secret,
            "installed_at": 1,
            "updated_at": 1,
        }
        with db.write() as conn:
            conn.execute(sa.insert(portals).values(**row))
        with pytest.raises(sa.exc.IntegrityError) as raised, db.write() as conn:
            conn.execute(sa.insert(portals).values(**row))
        assert secret not in str(raised.value)
        assert "hidden due to hide_parameters" in str(raised.value)
    finally:
        db.dispose()
