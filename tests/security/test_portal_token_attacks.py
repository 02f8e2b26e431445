"""Issue 7 finding 7, attacked harder: what a portal's own X-API-Token can reach beyond its portal (another
portal's Bitrix24 or Yandex token, the operator's amoCRM accounts), and whether it outlives its portal."""

import pytest
import sqlalchemy as sa

from database import portals
from tests.factories import make_credential, make_portal


@pytest.fixture
def own_token(services):
    """A portal with a live API token, and another portal with credentials of its own."""
    mine, theirs = make_portal(services), make_portal(services)
    token = services.portals.issue_admin_token(mine.id, actor="test")["token"]
    make_credential(services, "bitrix24", theirs.member_id, portal_id=theirs.id)
    make_credential(services, "yandex", "their-yandex", portal_id=theirs.id)
    make_credential(services, "amocrm", "operatorcrm")
    return mine, theirs, {"X-API-Token": token}


@pytest.mark.parametrize(
    "target", ["bitrix24/{theirs}", "yandex/their-yandex", "amocrm/operatorcrm", "bitrix24/{theirs}/../{theirs}"]
)
def test_a_portal_token_reads_no_credential_of_anyone_else(client, services, own_token, target):
    _mine, theirs, headers = own_token
    response = client.get(f"/api/admin/tokens/{target.format(theirs=theirs.member_id)}", headers=headers)
    assert response.status_code == 404
    assert "access_token" not in response.get_json()
    assert services.audit.entries(action="token_read") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/admin/amocrm/accounts"),
        ("POST", "/api/admin/amocrm/authorize"),
        ("DELETE", "/api/admin/amocrm/accounts/operatorcrm"),
    ],
)
def test_a_portal_token_cannot_work_the_operators_amocrm_accounts(client, own_token, method, path):
    _mine, _theirs, headers = own_token
    response = client.open(path, method=method, headers=headers, json={})
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"


def test_a_portal_token_dies_with_its_portal_even_if_a_row_kept_it(client, services, own_token):
    """Belt and braces: a portal marked uninstalled by any path no longer answers to its token."""
    mine, _theirs, headers = own_token
    with services.db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == mine.id).values(status="uninstalled"))
    response = client.get("/api/admin/status", headers=headers)
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"
