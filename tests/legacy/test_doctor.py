"""`flask doctor` against the live sandbox stack: healthy → exit 0; each fault → exit 1 and its line."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from database import credentials, task_runs
from tests.integration.helpers import app_db, mint, portal_info


def _sql(stack, statement) -> None:
    db = app_db(stack)
    try:
        with db.write() as conn:
            conn.execute(statement)
    finally:
        db.dispose()


@pytest.fixture
def healthy(live_stack):
    """portal1 installed, a Yandex organisation account connected, an amoCRM account, one refresh run."""
    stack = live_stack
    answer = stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert answer["status"] == 200, answer
    connected = stack.connect_yandex(portal_info(stack)["member_id"], "doctor@corp.example")
    assert connected.returncode == 0, connected.stderr
    pair = stack.control(
        "POST", "/_sandbox/oauth/tokens", {"provider": "amocrm", "subdomain": "sandboxcrm"}, expect=200
    )["tokens"][0]
    registered = requests.post(
        f"{stack.app_url}/api/admin/amocrm/accounts",
        timeout=30,
        headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]},
        json={
            "subdomain": "sandboxcrm",
            "access_token": pair["access_token"],
            "refresh_token": pair["refresh_token"],
            "expires_in": 86400,
        },
    )
    assert registered.status_code == 201, registered.text
    stack.amocrm_grant = pair["grant_id"]
    run = requests.post(f"{stack.app_url}/tasks/refresh", headers={"X-Cron-Token": stack.env["CRON_TOKEN"]}, timeout=60)
    assert run.status_code == 200, run.text
    return stack


def doctor(stack, **env):
    """Run `flask doctor`; returns (exit code, output lines)."""
    result = stack.flask("doctor", extra_env=env)
    return result.returncode, result.stdout.splitlines()


def line(lines: list[str], start: str) -> str:
    found = [text for text in lines if text.startswith(start)]
    assert len(found) == 1, "\n".join(lines)
    return found[0]


def test_healthy_stack_passes(healthy):
    code, lines = doctor(healthy)
    assert code == 0, "\n".join(lines)
    domain = portal_info(healthy)["domain"]
    assert not [text for text in lines if text.startswith("FAIL")]
    line(lines, "OK   database: sqlite, schema at ")
    line(lines, f"OK   Bitrix24 OAuth server: {healthy.sandbox['oauth']} answers")
    assert line(lines, "OK   portal: ").startswith(f"OK   portal: {domain} (")
    assert line(lines, "OK   portal: ").endswith("reachable, credential active, bot registered, events bound")
    line(lines, f"OK   Telemost API: {healthy.sandbox['telemost']} answers")
    line(lines, "OK   Yandex account: doctor@corp.example@yandex.ru: token accepted")
    line(lines, "OK   amoCRM account: sandboxcrm: token accepted")
    line(lines, "OK   cron: last refresh run 0 min ago")
    # No portal has the bot attached to a line: a missing event run is a warning only.
    line(lines, "WARN cron: no process-events run has ever been recorded")
    assert lines[lines.index(line(lines, "WARN cron: ")) + 1] == (
        "       fix: add a cron line running it every 5 minutes: */5 * * * * … flask --app app bot process-events "
        "(see docs/deploy.md)"
    )
    assert lines[-1] == "0 failed, 1 warnings"


def test_oauth_server_down(healthy):
    healthy.control("POST", "/_sandbox/faults", {"server": "oauth", "mode": "5xx", "value": 500}, expect=201)
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL Bitrix24 OAuth server: ") == (
        f"FAIL Bitrix24 OAuth server: {healthy.sandbox['oauth']} does not answer properly (INTERNAL_SERVER_ERROR)"
    )
    assert lines[lines.index(line(lines, "FAIL Bitrix24 OAuth server: ")) + 1].startswith(
        "       fix: check BITRIX24_OAUTH_URL"
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("needs_reauth", "the credential needs re-authorisation (last error invalid_grant)"),
        ("broken", "the credential cannot be decrypted"),
    ],
)
def test_portal_credential_unhealthy(healthy, status, expected):
    _sql(
        healthy,
        sa.update(credentials)
        .where(credentials.c.provider == "bitrix24", credentials.c.subject == "portal")
        .values(status=status, last_error="invalid_grant"),
    )
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL portal: ").endswith(expected)


def test_bot_not_registered(healthy):
    tokens = mint(healthy)
    bots = requests.post(
        f"{tokens['client_endpoint']}imbot.bot.list", json={"auth": tokens["access_token"]}, timeout=30
    ).json()["result"]
    for bot_id in bots:
        gone = requests.post(
            f"{tokens['client_endpoint']}imbot.unregister",
            json={"auth": tokens["access_token"], "BOT_ID": bot_id},
            timeout=30,
        )
        assert gone.status_code == 200, gone.text
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL portal: ").endswith("the Open Lines bot (telemost_openlines_bot) is not registered")
    assert lines[lines.index(line(lines, "FAIL portal: ")) + 1] == (
        "       fix: update or reinstall the app on the portal (set-up registers the bot)"
    )


def test_events_not_bound(healthy):
    tokens = mint(healthy)
    unbound = requests.post(
        f"{tokens['client_endpoint']}event.unbind",
        timeout=30,
        json={"auth": tokens["access_token"], "event": "ONAPPUPDATE", "handler": f"{healthy.app_url}/events"},
    )
    assert unbound.status_code == 200, unbound.text
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL portal: ").endswith(f"events not bound to {healthy.app_url}/events: ONAPPUPDATE")


def test_telemost_down(healthy):
    healthy.control("POST", "/_sandbox/faults", {"server": "telemost", "mode": "5xx", "value": 500}, expect=201)
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL Telemost API: ") == (
        f"FAIL Telemost API: {healthy.sandbox['telemost']} does not answer properly (telemost_unavailable)"
    )


def test_yandex_connection_needs_reauth(healthy):
    _sql(
        healthy,
        sa.update(credentials)
        .where(credentials.c.provider == "yandex")
        .values(status="needs_reauth", last_error="invalid_grant"),
    )
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL Yandex account: ") == (
        "FAIL Yandex account: doctor@corp.example@yandex.ru: needs re-authorisation (last error invalid_grant)"
    )


def test_amocrm_token_refused(healthy):
    healthy.control("POST", f"/_sandbox/oauth/grants/{healthy.amocrm_grant}/revoke", expect=200)
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL amoCRM account: ") == (
        "FAIL amoCRM account: sandboxcrm: amoCRM refuses the token (account_failed)"
    )


def test_migrations_behind(healthy):
    _sql(healthy, sa.text("UPDATE alembic_version SET version_num = '0005_connect'"))
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL database: ").startswith("FAIL database: schema at 0005_connect, the code expects ")
    assert "       fix: run: flask --app app db upgrade" in lines


def test_stale_refresh_run(healthy):
    _sql(healthy, sa.update(task_runs).values(started_at=time.time() - 2 * 3600))
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL cron: ") == "FAIL cron: the last refresh run started 120 min ago"


def test_never_ran_refresh(healthy):
    _sql(healthy, sa.delete(task_runs))
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL cron: ") == "FAIL cron: no refresh run has ever been recorded"


def test_fresh_deployment_only_warns(live_stack):
    code, lines = doctor(live_stack)
    assert code == 0, "\n".join(lines)
    assert [text for text in lines if text.startswith(("WARN", "FAIL"))] == [
        "WARN portal: no portal has the app installed yet",
        "WARN cron: no refresh run has ever been recorded",
        "WARN cron: no process-events run has ever been recorded",
    ]


def test_wrong_service_urls_are_not_taken_for_working_ones(healthy):
    code, lines = doctor(
        healthy, BITRIX24_OAUTH_URL=f"{healthy.base}/nothing-here", TELEMOST_API_URL=f"{healthy.base}/nothing-here"
    )
    assert code == 1
    assert line(lines, "FAIL Bitrix24 OAuth server: ") == (
        f"FAIL Bitrix24 OAuth server: {healthy.base}/nothing-here does not answer properly (http_404)"
    )
    assert line(lines, "FAIL Telemost API: ") == (
        f"FAIL Telemost API: {healthy.base}/nothing-here does not answer properly (telemost_not_found)"
    )


def test_fallback_yandex_token_is_checked(healthy):
    code, lines = doctor(healthy, YANDEX_OAUTH_TOKEN="not-a-real-token")
    assert code == 1
    assert line(lines, "FAIL Yandex account: ") == (
        "FAIL Yandex account: YANDEX_OAUTH_TOKEN: Yandex refuses the token (userinfo_failed)"
    )


def test_portal_endpoint_down(healthy):
    healthy.control("POST", "/_sandbox/faults", {"server": "portal", "mode": "5xx", "value": 500}, expect=201)
    code, lines = doctor(healthy)
    assert code == 1
    assert line(lines, "FAIL portal: ").endswith("the portal's REST endpoint does not answer (INTERNAL_SERVER_ERROR)")
