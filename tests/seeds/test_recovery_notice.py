"""The recovery notice (issue 10 item 9) over real HTTP: the app under gunicorn beside the sandbox.

A credential that was `needs_reauth` and works again (the admin re-opened the app; an amoCRM account
registered again) is announced: the portal admin gets a Bitrix24 notification that replaces the
needs-reauth one, the banner is gone and `b24_credentials_restored_total{provider}` counts it.
"""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from database import credentials
from scripts.stack import Stack
from tests.integration.helpers import app_db, boot_data, frame_post, mint, portal_info

AHEAD_SECONDS = 120
SHORT_TTL = 90  # due at once (< AHEAD_SECONDS)
RESTORED_EN = "has access to"
RESTORED_RU = "снова имеет доступ"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Sandbox (1 portal) + app under gunicorn; REFRESH_AHEAD_SECONDS makes short-lived tokens due."""
    tmp = tmp_path_factory.mktemp("seeds-recovery")
    running = Stack(
        database_path=str(tmp / "recovery.db"),
        portals=1,
        log_dir=tmp,
        extra_app_env={"REFRESH_AHEAD_SECONDS": str(AHEAD_SECONDS), "REFRESH_BACKOFF_SECONDS": "0.01"},
    )
    yield running
    running.stop()


def credential_row(stack, *where) -> dict:
    """The one credentials row matching `where`, as stored."""
    db = app_db(stack)
    try:
        with db.read() as conn:
            [row] = conn.execute(sa.select(credentials).where(*where)).all()
            return dict(row._mapping)
    finally:
        db.dispose()


def run(stack, **body) -> dict:
    """One refresh run over HTTP; its report."""
    response = requests.post(
        f"{stack.app_url}/tasks/refresh",
        json=body or None,
        headers={"X-Cron-Token": stack.env["CRON_TOKEN"]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def admin(stack, method: str, path: str, **kwargs) -> requests.Response:
    """An admin endpoint with the global X-API-Token."""
    headers = {"X-API-Token": stack.env["ADMIN_API_TOKEN"]}
    return requests.request(method, f"{stack.app_url}{path}", headers=headers, timeout=60, **kwargs)


def notifications(stack, name: str) -> list[dict]:
    """Notifications on a sandbox portal (its state keeps the newest one per TAG)."""
    return stack.control("GET", f"/_sandbox/portals/{name}/state", expect=200)["notifications"]


def notify_calls(stack, name: str) -> int:
    """How many times the app called im.notify.system.add on a sandbox portal."""
    calls = stack.control("GET", f"/_sandbox/portals/{name}/calls", expect=200)
    return sum(1 for c in calls if c["method"] == "im.notify.system.add")


def restored_total(stack, provider: str) -> float:
    """b24_credentials_restored_total{provider} from /metrics (0 when absent)."""
    text = requests.get(f"{stack.app_url}/metrics", timeout=30).text
    key = f'b24_credentials_restored_total{{provider="{provider}"}}'
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rpartition(" ")[2])
    return 0.0


def wait_for(check, timeout: float = 15.0):
    """Poll `check` until it returns something truthy (the notice is sent off the request path)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def set_access_ttl(stack, seconds: int) -> None:
    stack.control("POST", "/_sandbox/config", {"access_ttl": seconds}, expect=200)


def open_app(stack, name: str, application_token: str, user_id: int) -> dict:
    """The user opens the app in the portal: the boot data (bearer token inside)."""
    response = frame_post(stack, mint(stack, portal=name, user_id=user_id), application_token=application_token)
    assert response.status_code == 200, response.text
    return boot_data(response.text)


def test_admin_reopening_the_app_restores_the_portal_credential_and_says_so(stack):
    name = stack.control("POST", "/_sandbox/portals", {}, expect=201)["name"]
    set_access_ttl(stack, SHORT_TTL)
    try:
        result = stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)
        assert result["status"] == 200, result
    finally:
        set_access_ttl(stack, 3600)
    info = portal_info(stack, name)
    stack.control("DELETE", "/_sandbox/oauth/refreshes", expect=200)
    boot = open_app(stack, name, info["application_token"], 1)  # a working token beside the portal's
    portal_cred = (credentials.c.account == info["member_id"], credentials.c.subject == "portal")
    before = restored_total(stack, "bitrix24")

    set_access_ttl(stack, SHORT_TTL)
    try:
        assert run(stack, provider="bitrix24")["refreshed"] >= 1  # the refreshed pair is due again at once
    finally:
        set_access_ttl(stack, 3600)
    [grant_id] = stack.control("GET", "/_sandbox/oauth/refreshes", expect=200)["bitrix24"]["by_grant"]
    stack.control("POST", f"/_sandbox/oauth/grants/{grant_id}/revoke", expect=200)
    run(stack, provider="bitrix24")
    assert run(stack, provider="bitrix24")["needs_reauth"] == 1
    assert credential_row(stack, *portal_cred)["status"] == "needs_reauth"
    [alarm] = notifications(stack, name)
    assert alarm["tag"] == "telemost_reauth_bitrix24" and "invalid_grant" in alarm["message"]
    me = requests.get(
        f"{stack.app_url}/api/current-user", headers={"Authorization": f"Bearer {boot['token']}"}, timeout=30
    ).json()
    assert [a["code"] for a in me["alerts"]] == ["needs_reauth"]

    open_app(stack, name, info["application_token"], 1)  # the admin is back: a fresh pair for the portal

    assert credential_row(stack, *portal_cred)["status"] == "active"
    notice = wait_for(lambda: [n for n in notifications(stack, name) if RESTORED_RU in n["message"]])
    assert len(notice) == 1, notifications(stack, name)
    [note] = notifications(stack, name)  # the same TAG: the alarm was replaced, not joined
    assert (note["user_id"], note["tag"]) == (1, "telemost_reauth_bitrix24")
    assert note["message"] == (
        "Приложение «Яндекс Телемост» снова имеет доступ к Bitrix24. Больше ничего делать не нужно."
    )
    assert notify_calls(stack, name) == 2, "one alarm, one all-clear"
    me = requests.get(
        f"{stack.app_url}/api/users/current", headers={"Authorization": f"Bearer {boot['token']}"}, timeout=30
    ).json()
    assert me["alerts"] == []
    assert admin(stack, "GET", "/api/admin/status").json()["needs_reauth"] == []
    assert wait_for(lambda: restored_total(stack, "bitrix24") == before + 1)

    open_app(stack, name, info["application_token"], 1)  # a credential that is fine is not "restored" again
    time.sleep(1.0)
    assert notify_calls(stack, name) == 2
    assert restored_total(stack, "bitrix24") == before + 1


def test_an_amocrm_account_registered_again_is_counted_as_restored(stack):
    minted = stack.control("POST", "/_sandbox/oauth/tokens", {"provider": "amocrm", "subdomain": "backcrm"}, expect=200)
    pair = minted["tokens"][0]
    body = {
        "subdomain": "backcrm",
        "access_token": pair["access_token"],
        "refresh_token": pair["refresh_token"],
        "expires_in": 60,
    }
    assert admin(stack, "POST", "/api/admin/amocrm/accounts", json=body).status_code == 201
    stack.control("POST", f"/_sandbox/oauth/grants/{pair['grant_id']}/revoke", expect=200)
    run(stack, provider="amocrm")
    run(stack, provider="amocrm")
    where = (credentials.c.provider == "amocrm", credentials.c.account == "backcrm")
    assert credential_row(stack, *where)["status"] == "needs_reauth"
    assert [r["account"] for r in admin(stack, "GET", "/api/admin/status").json()["needs_reauth"]] == ["backcrm"]
    before = restored_total(stack, "amocrm")

    fresh = stack.control("POST", "/_sandbox/oauth/tokens", {"provider": "amocrm", "subdomain": "backcrm"}, expect=200)
    again = dict(
        body, access_token=fresh["tokens"][0]["access_token"], refresh_token=fresh["tokens"][0]["refresh_token"]
    )
    assert admin(stack, "POST", "/api/admin/amocrm/accounts", json=again).status_code == 201

    row = credential_row(stack, *where)
    assert (row["status"], row["failure_count"], row["last_error"]) == ("active", 0, None)
    assert wait_for(lambda: restored_total(stack, "amocrm") == before + 1)
    assert admin(stack, "GET", "/api/admin/status").json()["needs_reauth"] == []
