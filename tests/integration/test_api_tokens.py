"""A portal's own X-API-Token: it expires (PORTAL_API_TOKEN_TTL_DAYS), is revoked from the card, the API and
the CLI, and dies with uninstall and re-install (issue 7 finding 7). In-process against the app, plus the
uninstall/re-install paths over real HTTP against the sandbox."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from app import create_app
from config import ConfigError
from database import audit_log, portals
from models.security import Identity, token_hash
from tests.conftest import make_config
from tests.factories import make_portal
from tests.integration.helpers import boot_data, frame_post, mint, portal_info, portal_rows

DAY = 86400


def installed_portal(services, member_id: str) -> int:
    """An installed portal row through the factory (no Bitrix24 behind it: the token endpoints never call it)."""
    return make_portal(services, member_id=member_id, domain=f"{member_id}.bitrix24.ru").id


def portal_row(services, portal_id: int) -> dict:
    with services.db.read() as conn:
        return dict(conn.execute(sa.select(portals).where(portals.c.id == portal_id)).first()._mapping)


def bearer(services, portal_id: int, member_id: str, *, admin: bool = True, user_id: int = 1) -> dict:
    """Authorization header of a verified iframe session."""
    identity = Identity(
        member_id=member_id,
        user_id=user_id,
        portal_id=portal_id,
        domain=f"{member_id}.bitrix24.ru",
        name="Иван Петров",
        is_admin=admin,
    )
    return {"Authorization": f"Bearer {services.signer.issue(identity)[0]}"}


def status_with(client, token: str):
    return client.get("/api/admin/status", headers={"X-API-Token": token})


@pytest.fixture
def portal(services):
    """One installed portal: (id, member_id, admin's headers)."""
    pid = installed_portal(services, "member-a")
    return pid, "member-a", bearer(services, pid, "member-a")


def issue(client, headers) -> dict:
    response = client.post("/api/portal/admin-token", headers=headers, json={})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


# ---- issue, status, expiry -----------------------------------------------------------------------------------


def test_issue_returns_the_expiry_and_the_status_shows_it_without_the_value(client, services, portal):
    pid, member_id, headers = portal
    assert client.get("/api/portal/admin-token", headers=headers).get_json() == {
        "issued": False,
        "issued_at": None,
        "expires_at": None,
        "expired": False,
    }
    issued = issue(client, headers)
    assert set(issued) == {"token", "issued_at", "expires_at"}
    assert issued["expires_at"] == issued["issued_at"] + 90 * DAY
    row = portal_row(services, pid)
    assert (row["admin_token_hash"], row["admin_token_issued_at"], row["admin_token_expires_at"]) == (
        token_hash(issued["token"]),
        issued["issued_at"],
        issued["expires_at"],
    )
    status = client.get("/api/portal/admin-token", headers=headers)
    assert status.status_code == 200
    assert status.get_json() == {
        "issued": True,
        "issued_at": issued["issued_at"],
        "expires_at": issued["expires_at"],
        "expired": False,
    }
    assert issued["token"] not in status.get_data(as_text=True)
    assert status_with(client, issued["token"]).status_code == 200
    with services.db.read() as conn:
        [entry] = conn.execute(sa.select(audit_log).where(audit_log.c.action == "admin_token_issued")).all()
    assert (entry.actor, entry.target) == (f"user:{member_id}:1", member_id)
    assert issued["token"] not in entry.detail


def test_the_lifetime_comes_from_the_setting(tmp_path):
    application = create_app(make_config(tmp_path, PORTAL_API_TOKEN_TTL_DAYS=7))
    try:
        services = application.extensions["services"]
        pid = installed_portal(services, "member-ttl")
        issued = issue(application.test_client(), bearer(services, pid, "member-ttl"))
        assert issued["expires_at"] - issued["issued_at"] == 7 * DAY
    finally:
        application.extensions["db"].dispose()


def test_an_expired_token_is_refused(client, services, portal):
    pid, _member_id, headers = portal
    token = issue(client, headers)["token"]
    with services.db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == pid).values(admin_token_expires_at=int(time.time()) - 1))
    refused = status_with(client, token)
    assert refused.status_code == 401 and refused.get_json()["error"] == "unauthorized"
    assert client.get("/api/portal/admin-token", headers=headers).get_json()["expired"] is True


def test_a_token_without_an_expiry_is_refused(client, services, portal):
    """Rows written before the expiry existed (and not migrated) never pass."""
    pid, _member_id, _headers = portal
    with services.db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == pid).values(admin_token_hash=token_hash("legacy-token")))
    assert status_with(client, "legacy-token").status_code == 401


def test_employees_cannot_see_issue_or_revoke(client, services, portal):
    pid, member_id, _headers = portal
    employee = bearer(services, pid, member_id, admin=False, user_id=2)
    for method in ("GET", "POST", "DELETE"):
        response = client.open("/api/portal/admin-token", method=method, headers=employee, json={})
        assert response.status_code == 403, method
    assert portal_row(services, pid)["admin_token_hash"] is None


# ---- revoke: the card, the API, the CLI ----------------------------------------------------------------------


def test_the_admin_revokes_from_the_card(client, services, portal):
    pid, member_id, headers = portal
    token = issue(client, headers)["token"]
    revoked = client.delete("/api/portal/admin-token", headers=headers)
    assert revoked.status_code == 200
    assert revoked.get_json() == {
        "revoked": True,
        "issued": False,
        "issued_at": None,
        "expires_at": None,
        "expired": False,
    }
    assert status_with(client, token).status_code == 401
    row = portal_row(services, pid)
    assert (row["admin_token_hash"], row["admin_token_expires_at"]) == (None, None)
    again = client.delete("/api/portal/admin-token", headers=headers)
    assert again.status_code == 200 and again.get_json()["revoked"] is False
    with services.db.read() as conn:
        actions = [r.action for r in conn.execute(sa.select(audit_log).where(audit_log.c.target == member_id))]
    assert actions == ["admin_token_issued", "admin_token_revoked"]


def test_a_portal_token_revokes_itself_through_the_api(client, services, portal):
    _pid, member_id, headers = portal
    token = issue(client, headers)["token"]
    response = client.delete(f"/api/admin/portal-token?portal={member_id}", headers={"X-API-Token": token})
    assert response.status_code == 200 and response.get_json() == {"portal": member_id, "revoked": True}
    assert status_with(client, token).status_code == 401


def test_a_portal_token_cannot_revoke_another_portals(client, services, portal):
    _pid, member_id, headers = portal
    other = installed_portal(services, "member-b")
    mine = issue(client, headers)["token"]
    theirs = issue(client, bearer(services, other, "member-b"))["token"]
    response = client.delete("/api/admin/portal-token?portal=member-b", headers={"X-API-Token": mine})
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert status_with(client, theirs).status_code == 200


def test_the_global_token_revokes_any_portals(client, app, services, portal):
    _pid, member_id, headers = portal
    token = issue(client, headers)["token"]
    response = client.delete(
        f"/api/admin/portal-token?portal={member_id}", headers={"X-API-Token": app.config["ADMIN_API_TOKEN"]}
    )
    assert response.status_code == 200 and response.get_json()["revoked"] is True
    assert status_with(client, token).status_code == 401
    with services.db.read() as conn:
        [entry] = conn.execute(sa.select(audit_log).where(audit_log.c.action == "admin_token_revoked")).all()
    assert entry.actor == "admin:global"


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("", 400, "portal_required"),
        ("?portal=", 400, "portal_required"),
        ("?portal=nobody", 404, "portal_not_found"),
    ],
)
def test_revoke_api_refuses_bad_requests(client, app, query, status, error):
    response = client.delete(f"/api/admin/portal-token{query}", headers={"X-API-Token": app.config["ADMIN_API_TOKEN"]})
    assert response.status_code == status and response.get_json()["error"] == error


def test_revoke_api_needs_a_token(client, portal):
    assert client.delete("/api/admin/portal-token?portal=member-a").status_code == 401


def test_cli_revokes_a_portals_token(client, runner, services, portal):
    pid, member_id, headers = portal
    token = issue(client, headers)["token"]
    result = runner.invoke(args=["portals", "revoke-token", member_id])
    assert result.exit_code == 0 and "revoked" in result.output and token not in result.output
    assert status_with(client, token).status_code == 401
    assert portal_row(services, pid)["admin_token_hash"] is None
    assert "has no API token" in runner.invoke(args=["portals", "revoke-token", member_id]).output
    unknown = runner.invoke(args=["portals", "revoke-token", "nobody"])
    assert unknown.exit_code == 1 and "no portal" in unknown.output


# ---- uninstall and re-install (sandbox) ------------------------------------------------------------------------


def open_as_admin(stack) -> dict:
    info = portal_info(stack)
    page = frame_post(stack, mint(stack, user_id=1), application_token=info["application_token"])
    assert page.status_code == 200, page.text
    return {"Authorization": f"Bearer {boot_data(page.text)['token']}"}


def issue_live(stack) -> str:
    response = requests.post(
        f"{stack.app_url}/api/portal/admin-token", headers=open_as_admin(stack), json={}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def works(stack, token: str) -> int:
    return requests.get(f"{stack.app_url}/api/admin/status", headers={"X-API-Token": token}, timeout=30).status_code


@pytest.mark.parametrize("clean", [False, True], ids=["keep-data", "clean"])
def test_uninstall_and_reinstall_clear_the_token(live_stack, clean):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    token = issue_live(live_stack)
    assert works(live_stack, token) == 200
    assert live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": clean})["status"] == 200
    [row] = portal_rows(live_stack)
    assert (row["status"], row["admin_token_hash"], row["admin_token_expires_at"]) == ("uninstalled", None, None)
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert portal_rows(live_stack)[0]["status"] == "installed"
    assert works(live_stack, token) == 401, "a token from before the uninstall is dead after re-install"


def test_reinstall_over_an_installed_portal_clears_the_token(live_stack):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    token = issue_live(live_stack)
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert portal_rows(live_stack)[0]["admin_token_hash"] is None
    assert works(live_stack, token) == 401


@pytest.mark.parametrize("days", [0, 3651])
def test_the_lifetime_setting_is_validated(tmp_path, days):
    with pytest.raises(ConfigError) as refused:
        create_app(make_config(tmp_path, PORTAL_API_TOKEN_TTL_DAYS=days))
    assert "PORTAL_API_TOKEN_TTL_DAYS" in str(refused.value)
