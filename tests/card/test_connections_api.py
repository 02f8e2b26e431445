"""GET /api/portal/connections: the card's shape, portal isolation, admins only, never a token."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from database import credentials
from models.security import Identity
from models.vault import NEEDS_REAUTH, user_subject
from tests.factories import make_credential, make_portal

URL = "/api/portal/connections"


def bearer(services, portal, user_id: int = 1, *, is_admin: bool = True) -> dict:
    """A session token for a user of `portal`."""
    identity = Identity(portal.member_id, user_id, portal.id, portal.domain, f"User {user_id}", is_admin)
    token, _ = services.signer.issue(identity)
    return {"Authorization": f"Bearer {token}"}


def set_failed(services, credential_id: int, error: str) -> None:
    """Put a credential in needs_reauth with `error`, as the keeper would after permanent failures."""
    with services.db.write() as conn:
        conn.execute(
            sa.update(credentials)
            .where(credentials.c.id == credential_id)
            .values(status=NEEDS_REAUTH, last_error=error, last_error_at=int(time.time()), failure_count=2)
        )


@pytest.fixture
def portal(services):
    """A portal with every kind of credential, and the secrets stored for it."""
    p = make_portal(services)
    secrets: list[str] = []

    def cred(provider, account, **kw):
        access, refresh = f"ACCESS-{provider}-{account}", f"REFRESH-{provider}-{account}"
        secrets.extend([access, refresh])
        return make_credential(services, provider, account, access=access, refresh=refresh, portal_id=p.id, **kw)

    ids = {
        "b24": cred("bitrix24", p.member_id, label=p.domain, refresh_expires_in=100 * 86400),
        "emp2": cred("bitrix24", p.member_id, subject=user_subject(2), user_id=2),
        "emp3": cred("bitrix24", p.member_id, subject=user_subject(3), user_id=3, refresh_expires_in=20 * 86400),
        "emp4": cred("bitrix24", p.member_id, subject=user_subject(4), user_id=4),
        "yandex": cred("yandex", "yuid-portal", label="org@yandex.example"),
        "yandex7": cred("yandex", "yuid-7", subject=user_subject(7), user_id=7, label="seven@yandex.example"),
        "amo": cred("amocrm", "shop", label="shop"),
    }
    set_failed(services, ids["emp4"], "invalid_grant")
    return p, ids, secrets


def by_scope(body: dict) -> dict:
    """The connections keyed by (provider, scope); amoCRM accounts by label."""
    return {(c["provider"], c["label"] if c["provider"] == "amocrm" else c["scope"]): c for c in body["connections"]}


def test_admin_sees_every_credential_of_the_portal(client, services, portal):
    p, ids, _ = portal
    response = client.get(URL, headers=bearer(services, p))
    assert response.status_code == 200
    body = response.get_json()
    items = by_scope(body)
    assert list(items) == [
        ("bitrix24", "portal"),
        ("bitrix24", "employees"),
        ("yandex", "portal"),
        ("yandex", "personal"),
        ("amocrm", "shop"),
    ]
    b24 = items[("bitrix24", "portal")]
    assert b24["status"] == "active"
    assert b24["label"] == p.domain
    assert b24["refreshable"] is True
    assert b24["reauthorize"] is None
    assert 100 * 86400 - 60 <= b24["refresh_token_left_seconds"] <= 100 * 86400
    # In use, access token ends in an hour: due REFRESH_AHEAD_SECONDS (600 by default) before that.
    assert b24["next_refresh_at"] == b24["expires_at"] - services.engine.settings.ahead_seconds

    employees = items[("bitrix24", "employees")]
    assert employees["count"] == 3
    assert employees["by_status"] == {"active": 2, "needs_reauth": 1}
    assert employees["status"] == "needs_reauth"
    assert employees["last_error"] == "invalid_grant"
    assert employees["reauthorize"] == "employee_open"
    assert 20 * 86400 - 60 <= employees["refresh_token_left_seconds"] <= 20 * 86400

    assert items[("yandex", "portal")]["label"] == "org@yandex.example"
    assert items[("yandex", "portal")]["reauthorize"] == "yandex_connect"
    assert items[("yandex", "portal")]["fallback"] is False
    assert items[("yandex", "personal")]["by_status"] == {"active": 1}
    assert items[("amocrm", "shop")]["status"] == "active"


def test_a_failed_credential_shows_its_error_and_the_way_back(client, services, portal):
    p, ids, _ = portal
    set_failed(services, ids["b24"], "invalid_grant")
    body = client.get(URL, headers=bearer(services, p)).get_json()
    b24 = by_scope(body)[("bitrix24", "portal")]
    assert b24["status"] == "needs_reauth"
    assert b24["last_error"] == "invalid_grant"
    assert b24["reauthorize"] == "open_app"
    # A credential that needs re-authorisation is never refreshed by the keeper.
    assert b24["next_refresh_at"] is None


def test_no_token_and_no_yandex_uid_in_the_answer(client, services, portal):
    p, _, secrets = portal
    text = client.get(URL, headers=bearer(services, p)).get_data(as_text=True)
    for secret in secrets:
        assert secret not in text
    assert "yuid-" not in text
    # Personal accounts are counted, never listed.
    assert "seven@yandex.example" not in text


def test_another_portals_credentials_never_appear(client, services, portal):
    p, _, secrets = portal
    other = make_portal(services)
    make_credential(services, "bitrix24", other.member_id, portal_id=other.id, label=other.domain)
    body = client.get(URL, headers=bearer(services, other)).get_json()
    items = by_scope(body)
    assert list(items) == [
        ("bitrix24", "portal"),
        ("bitrix24", "employees"),
        ("yandex", "portal"),
        ("yandex", "personal"),
    ]
    assert items[("bitrix24", "portal")]["label"] == other.domain
    assert items[("bitrix24", "employees")]["count"] == 0
    assert items[("yandex", "portal")]["status"] == "not_connected"
    assert items[("yandex", "personal")]["count"] == 0
    text = json.dumps(body)
    assert p.domain not in text
    assert "shop" not in text


def test_operator_level_amocrm_accounts_are_not_shown(client, services, portal):
    p, _, _ = portal
    make_credential(services, "amocrm", "global-acc", label="global-acc")
    body = client.get(URL, headers=bearer(services, p)).get_json()
    assert [c["label"] for c in body["connections"] if c["provider"] == "amocrm"] == ["shop"]


def test_employees_get_403(client, services, portal):
    p, _, _ = portal
    response = client.get(URL, headers=bearer(services, p, user_id=2, is_admin=False))
    assert response.status_code == 403
    assert response.get_json()["error"] == "forbidden"


def test_no_session_gets_401(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_long_lived_amocrm_token_is_not_refreshable(client, services):
    p = make_portal(services)
    make_credential(services, "amocrm", "longlived", refresh=None, expires_in=30 * 86400, portal_id=p.id, label="ll")
    body = client.get(URL, headers=bearer(services, p)).get_json()
    amo = by_scope(body)[("amocrm", "ll")]
    assert amo["refreshable"] is False
    assert amo["next_refresh_at"] is None
    assert amo["refresh_token_left_seconds"] is None
    assert amo["reauthorize"] is None


def test_server_yandex_token_is_shown_as_the_fallback(make_client, tmp_path):
    client = make_client(YANDEX_OAUTH_TOKEN="server-wide-yandex-token")
    services = client.application.extensions["services"]
    p = make_portal(services)
    response = client.get(URL, headers=bearer(services, p))
    yandex = by_scope(response.get_json())[("yandex", "portal")]
    assert yandex["status"] == "not_connected"
    assert yandex["fallback"] is True
    assert "server-wide-yandex-token" not in response.get_data(as_text=True)
