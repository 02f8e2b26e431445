"""Issue 7 finding 5, attacked from the other paths that read a credential: a portal whose only credential no
configured key decrypts gets a forged uninstall with CLEAN=1, and the operator asks for the status."""

import sqlalchemy as sa
from cryptography.fernet import Fernet

from database import credentials
from tests.conftest import load_fixture
from tests.factories import make_credential, make_portal

APP_TOKEN = "c0ffee" * 5


def test_a_forged_uninstall_of_a_portal_with_an_undecryptable_credential_deletes_nothing(client, services, config):
    portal = make_portal(services, application_token=APP_TOKEN)
    cred_id = make_credential(services, "bitrix24", portal.member_id, portal_id=portal.id)
    foreign = Fernet(Fernet.generate_key()).encrypt(b"whatever").decode()
    with services.db.write() as conn:
        conn.execute(sa.update(credentials).where(credentials.c.id == cred_id).values(access_token_enc=foreign))
    form = dict(load_fixture("event-ONAPPUNINSTALL.json")["payload"])
    form.update(
        {
            "auth[member_id]": portal.member_id,
            "auth[domain]": portal.domain,
            "auth[application_token]": APP_TOKEN,
            "data[CLEAN]": "1",
        }
    )

    response = client.post("/events", data=form)

    assert response.status_code == 403 and response.get_json()["error"] == "uninstall_unverifiable"
    assert services.portals.get(portal.id).status == "installed"
    [row] = services.vault.list(portal_id=portal.id)
    assert (row["id"], row["status"], row["last_error"]) == (cred_id, "broken", "undecryptable")

    status = client.get("/api/admin/status", headers={"X-API-Token": config["ADMIN_API_TOKEN"]})
    assert status.status_code == 200
    assert [(b["id"], b["last_error"]) for b in status.get_json()["broken"]] == [(cred_id, "undecryptable")]
