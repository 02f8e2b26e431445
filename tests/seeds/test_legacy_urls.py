"""The seeds' URLs (issue 10 item 5): each old URL answers what its new counterpart answers, and the old
bot's `?token=` works beside the preferred X-API-Token header."""

from __future__ import annotations

import sqlalchemy as sa

from database import bot_settings
from models.security import Identity
from tests.openlines.helpers import make_portal


def bot_enabled(services, portal_id: int) -> bool:
    """The per-portal switch as stored."""
    with services.db.read() as conn:
        return conn.execute(sa.select(bot_settings.c.enabled).where(bot_settings.c.portal_id == portal_id)).scalar_one()


def bearer(services, portal: dict, *, admin: bool = True) -> dict:
    """An iframe session header for user 1 (admin) or 2 of the portal."""
    who = Identity(portal["member_id"], 1 if admin else 2, portal["id"], "p1.bitrix24.test", "Anna Admin", admin)
    token, _ = services.signer.issue(who)
    return {"Authorization": f"Bearer {token}"}


def test_users_current_answers_what_current_user_answers(services, client):
    portal = make_portal(services)
    headers = bearer(services, portal)
    new = client.get("/api/current-user", headers=headers)
    old = client.get("/api/users/current", headers=headers)
    assert (new.status_code, old.status_code) == (200, 200)
    assert old.get_json() == new.get_json()
    assert old.get_json()["user"] == {
        "id": 1,
        "name": "Anna Admin",
        "first_name": "Anna",
        "last_name": "Admin",
        "is_admin": True,
    }
    assert old.headers["Cache-Control"] == "no-store"


def test_users_current_refuses_what_current_user_refuses(services, client):
    make_portal(services)
    for headers in ({}, {"Authorization": "Bearer not-a-session"}):
        new = client.get("/api/current-user", headers=headers)
        old = client.get("/api/users/current", headers=headers)
        assert old.status_code == 401
        assert old.get_json() == new.get_json()
    # An admin token is no session: the alias is as strict as the new URL.
    assert (
        client.get("/api/users/current", headers={"X-API-Token": make_portal(services, "p2")["api_token"]}).status_code
        == 401
    )


def test_users_with_the_header_and_with_token_in_the_query(services, client):
    portal = make_portal(services)
    by_header = client.get("/api/users", headers={"X-API-Token": portal["api_token"]})
    by_query = client.get(f"/api/users?token={portal['api_token']}")
    assert (by_header.status_code, by_query.status_code) == (200, 200)
    assert by_query.get_json() == by_header.get_json()
    assert by_query.get_json() == {"items": [{"id": "1", "name": "Anna", "last_name": "Admin", "position": "CEO"}]}


def test_users_header_wins_over_a_wrong_query_token(services, client):
    portal = make_portal(services)
    response = client.get("/api/users?token=wrong", headers={"X-API-Token": portal["api_token"]})
    assert response.status_code == 200


def test_wrong_query_token_is_refused(services, client):
    make_portal(services)
    response = client.get("/api/users?token=wrong")
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_admin_disable_and_enable_with_token_in_the_query(services, client):
    portal = make_portal(services)
    off = client.post(f"/api/admin/disable?token={portal['api_token']}")
    assert (off.status_code, off.get_json()) == (200, {"enabled": False})
    assert bot_enabled(services, portal["id"]) is False
    on = client.post(f"/api/admin/enable?token={portal['api_token']}")
    assert (on.status_code, on.get_json()) == (200, {"enabled": True})
    assert bot_enabled(services, portal["id"]) is True


def test_admin_disable_answers_the_same_with_the_header(services, client):
    portal = make_portal(services)
    by_query = client.post(f"/api/admin/disable?token={portal['api_token']}").get_json()
    by_header = client.post("/api/admin/disable", headers={"X-API-Token": portal["api_token"]}).get_json()
    assert by_query == by_header == {"enabled": False}
    assert bot_enabled(services, portal["id"]) is False


def test_admin_status_with_token_in_the_query_answers_the_header_shape(services, client):
    portal = make_portal(services)
    by_header = client.get("/api/admin/status", headers={"X-API-Token": portal["api_token"]})
    by_query = client.get(f"/api/admin/status?token={portal['api_token']}")
    assert (by_header.status_code, by_query.status_code) == (200, 200)
    assert by_query.get_json() == by_header.get_json()
    assert by_query.get_json()["bot"]["enabled"] is True
    assert by_query.get_json()["portal"]["member_id"] == portal["member_id"]


def test_admin_reinit_db_with_the_global_token_in_the_query(seeds_app, client):
    token = seeds_app.config["ADMIN_API_TOKEN"]
    by_query = client.post(f"/api/admin/reinit_db?token={token}")
    by_header = client.post("/api/admin/reinit_db", headers={"X-API-Token": token})
    assert (by_query.status_code, by_header.status_code) == (200, 200)
    assert by_query.get_json() == by_header.get_json()


def test_admin_reinit_db_refuses_a_portal_token_in_the_query(services, client):
    portal = make_portal(services)
    response = client.post(f"/api/admin/reinit_db?token={portal['api_token']}")
    assert response.status_code == 403


def test_old_bots_bearer_api_token_is_taken_as_the_api_token(services, client, seeds_app):
    """The old bot sent `Authorization: Bearer <API_SECRET_TOKEN>`; a session JWT still goes the session way."""
    portal = make_portal(services)
    as_header = client.get("/api/users", headers={"X-API-Token": portal["api_token"]})
    as_bearer = client.get("/api/users", headers={"Authorization": f"Bearer {portal['api_token']}"})
    assert (as_header.status_code, as_bearer.status_code) == (200, 200)
    assert as_bearer.get_json() == as_header.get_json()
    wrong = client.get("/api/users", headers={"Authorization": "Bearer not-a-token-we-issued"})
    assert (wrong.status_code, wrong.get_json()["error"]) == (401, "unauthorized")


def test_the_global_token_needs_no_portal_name_while_one_portal_is_installed(services, client, seeds_app):
    """A single-portal deployment's old scripts name no portal; with two portals the name is required again."""
    global_token = {"X-API-Token": seeds_app.config["ADMIN_API_TOKEN"]}
    first = make_portal(services)
    response = client.post("/api/admin/disable", headers=global_token)
    assert (response.status_code, response.get_json()) == (200, {"enabled": False})
    assert bot_enabled(services, first["id"]) is False
    make_portal(services, "p2")
    again = client.post("/api/admin/enable", headers=global_token)
    assert (again.status_code, again.get_json()["error"]) == (400, "portal_required")
    assert bot_enabled(services, first["id"]) is False
