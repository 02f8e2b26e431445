"""Per-address rate limits on the token-protected endpoints, and the 10 MB body limit."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app import MAX_BODY_BYTES
from database import rate_limits
from tests.edge.conftest import LIMIT, WINDOW

# One request per endpoint group, as a client with a valid token sends it (headers filled in per test).
GROUPS = {
    "admin": ("GET", "/api/admin/status", "admin"),
    "portal_api": ("GET", "/api/dialogs", "admin"),
    "tasks": ("POST", "/tasks/process-events", "cron"),
    "metrics": ("GET", "/metrics", None),
}


def call(app, group: str, address: str, portal: str = ""):
    """One request of `group` from `address`, as nginx reports it (TRUSTED_PROXIES=1)."""
    method, path, auth = GROUPS[group]
    headers = {"X-Forwarded-For": address}
    if auth == "admin":
        headers["X-API-Token"] = app.config["ADMIN_API_TOKEN"]
    elif auth == "cron":
        headers["X-Cron-Token"] = app.config["CRON_TOKEN"]
    query = {"portal": portal} if group == "portal_api" else {}
    return app.test_client().open(path, method=method, headers=headers, query_string=query)


def counters(app) -> dict[tuple[str, str], int]:
    """(group, client) → requests counted, as stored."""
    with app.extensions["db"].read() as conn:
        rows = conn.execute(sa.select(rate_limits.c.scope, rate_limits.c.client, rate_limits.c.hits)).all()
    return {(r.scope, r.client): r.hits for r in rows}


@pytest.fixture
def portal_member(limited_apps):
    """An installed portal, for the dialogs API's portal=<member_id>."""
    from tests.factories import make_portal

    return make_portal(limited_apps[0].extensions["services"]).member_id


@pytest.mark.parametrize("group", list(GROUPS))
def test_the_limit_trips_at_exactly_n_plus_one_across_workers(limited_apps, clock, portal_member, group):
    first, second = limited_apps
    statuses = [call((first, second)[n % 2], group, "198.51.100.7", portal_member).status_code for n in range(LIMIT)]
    assert statuses == [200] * LIMIT

    clock.now += 15
    refused = call(first, group, "198.51.100.7", portal_member)

    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limited"
    assert refused.headers["Retry-After"] == str(WINDOW - 15)
    assert counters(first) == {(group, "198.51.100.7"): LIMIT + 1}


def test_two_hosts_on_postgresql_share_the_count(limited_apps_on_postgres, clock):
    first, second = limited_apps_on_postgres
    assert [call((first, second)[n % 2], "admin", "198.51.100.7").status_code for n in range(LIMIT)] == [200] * LIMIT
    refused = call(second, "admin", "198.51.100.7")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == str(WINDOW)
    clock.now += WINDOW
    assert call(first, "admin", "198.51.100.7").status_code == 200
    assert counters(first) == {("admin", "198.51.100.7"): 1}


def test_other_addresses_and_groups_are_unaffected(limited_apps, portal_member):
    first, second = limited_apps
    for _ in range(LIMIT + 1):
        call(first, "admin", "198.51.100.7")
    assert call(second, "admin", "198.51.100.7").status_code == 429
    assert call(second, "admin", "198.51.100.8").status_code == 200
    assert call(second, "portal_api", "198.51.100.7", portal_member).status_code == 200
    assert counters(first) == {
        ("admin", "198.51.100.7"): LIMIT + 2,
        ("admin", "198.51.100.8"): 1,
        ("portal_api", "198.51.100.7"): 1,
    }


def test_the_window_resets(limited_apps, clock):
    first, _ = limited_apps
    for _ in range(LIMIT):
        assert call(first, "admin", "198.51.100.7").status_code == 200
    assert call(first, "admin", "198.51.100.7").status_code == 429
    clock.now += WINDOW - 1
    assert call(first, "admin", "198.51.100.7").status_code == 429

    clock.now += 1
    assert call(first, "admin", "198.51.100.7").status_code == 200
    # A new window: the old counters are pruned, only the fresh one is left.
    assert counters(first) == {("admin", "198.51.100.7"): 1}


def test_bitrix24_event_handlers_are_not_limited_by_address(limited_apps):
    first, _ = limited_apps
    client = first.test_client()
    form = {"event": "ONIMBOTMESSAGEADD", "auth[application_token]": "x", "auth[member_id]": "nobody"}
    statuses = {
        client.post(path, data=form, headers={"X-Forwarded-For": "198.51.100.7"}).status_code
        for path in ("/python_bot/", "/events", "/install")
        for _ in range(LIMIT + 2)
    }
    assert 429 not in statuses
    assert counters(first) == {}


def test_zero_turns_the_limit_off(make_client):
    client = make_client(RATE_LIMIT_REQUESTS=0)
    headers = {"X-API-Token": client.application.config["ADMIN_API_TOKEN"]}
    assert {client.get("/api/admin/status", headers=headers).status_code for _ in range(LIMIT + 1)} == {200}
    assert counters(client.application) == {}


@pytest.mark.parametrize("path", ["/api/session", "/python_bot/", "/"])
def test_a_body_over_10_mb_is_a_json_413(client, path):
    response = client.post(path, data=b"x" * (MAX_BODY_BYTES + 1), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert "10 MB" in response.get_json()["message"]


def test_a_body_of_exactly_10_mb_is_not_refused_for_its_size(client):
    body = b'{"pad": "' + b"x" * (MAX_BODY_BYTES - 11) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    response = client.post("/api/session", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"  # not JSON a session can be made of: read, then refused
