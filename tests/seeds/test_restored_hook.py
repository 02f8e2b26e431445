"""When the vault announces a restored credential, and what the admin is told (in-process, fake portal REST)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from database import credentials, portals
from models.alerts import ReauthNotifier
from models.vault import PORTAL_SUBJECT, TokenSet, user_subject
from routes.i18n import translate
from tests.openlines.helpers import make_portal


class Heard:
    """A listener for vault.on_restored that remembers what it heard."""

    def __init__(self):
        self.ids: list[int] = []
        self.statuses: list[str] = []
        self.event = threading.Event()

    def __call__(self, cred) -> None:
        self.ids.append(cred.id)
        self.statuses.append(cred.status)
        self.event.set()


@pytest.fixture
def heard(services) -> Heard:
    listener = Heard()
    services.vault.on_restored = listener
    return listener


def fresh_pair() -> TokenSet:
    ts = int(time.time())
    return TokenSet("new-access", "new-refresh", ts + 3600, ts + 86400)


def set_status(services, cred_id: int, status: str) -> None:
    with services.db.write() as conn:
        conn.execute(sa.update(credentials).where(credentials.c.id == cred_id).values(status=status))


def portal_credential(services, portal: dict):
    return services.vault.find("bitrix24", portal["member_id"], PORTAL_SUBJECT)


def test_a_fresh_pair_for_a_needs_reauth_credential_is_announced_once(services, heard):
    portal = make_portal(services)
    cred = portal_credential(services, portal)
    set_status(services, cred.id, "needs_reauth")
    services.vault.store("bitrix24", portal["member_id"], PORTAL_SUBJECT, fresh_pair(), portal_id=portal["id"])
    assert heard.event.wait(5)
    assert (heard.ids, heard.statuses) == ([cred.id], ["active"])
    assert portal_credential(services, portal).status == "active"
    services.vault.store("bitrix24", portal["member_id"], PORTAL_SUBJECT, fresh_pair(), portal_id=portal["id"])
    time.sleep(0.5)
    assert heard.ids == [cred.id], "an active credential that gets a new pair is not 'restored'"


def test_the_announcement_waits_for_the_callers_commit(services, heard):
    portal = make_portal(services)
    cred = portal_credential(services, portal)
    set_status(services, cred.id, "needs_reauth")
    with services.db.write() as conn:
        services.vault.store(
            "bitrix24", portal["member_id"], PORTAL_SUBJECT, fresh_pair(), portal_id=portal["id"], conn=conn
        )
        time.sleep(0.5)
        assert heard.ids == [], "nothing is told before the transaction commits"
    assert heard.event.wait(5)
    assert heard.ids == [cred.id]


def test_a_rolled_back_store_is_never_announced(services, heard):
    portal = make_portal(services)
    cred = portal_credential(services, portal)
    set_status(services, cred.id, "needs_reauth")
    with pytest.raises(RuntimeError), services.db.write() as conn:
        services.vault.store(
            "bitrix24", portal["member_id"], PORTAL_SUBJECT, fresh_pair(), portal_id=portal["id"], conn=conn
        )
        raise RuntimeError("the caller failed after storing")
    assert heard.ids == []
    assert portal_credential(services, portal).status == "needs_reauth"


def test_the_engine_counts_a_restored_credential(services):
    portal = make_portal(services)
    cred = portal_credential(services, portal)
    set_status(services, cred.id, "needs_reauth")
    services.vault.store("bitrix24", portal["member_id"], PORTAL_SUBJECT, fresh_pair(), portal_id=portal["id"])

    def counted() -> int:
        return sum(
            value
            for name, labels, value in services.metrics.counters()
            if name == "credentials_restored_total" and labels == 'provider="bitrix24"'
        )

    deadline = time.monotonic() + 5
    while counted() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted() == 1


def admin_portal(services, portal: dict, language: str = "en") -> None:
    with services.db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == portal["id"]).values(admin_user_id=1, language=language))


def test_the_admin_is_told_through_the_restored_credential_itself(services, rest):
    portal = make_portal(services)
    admin_portal(services, portal)
    cred = portal_credential(services, portal)
    ReauthNotifier(services.portals, translate).restored(cred)
    [sent] = rest.of(portal["member_id"], "im.notify.system.add")
    assert sent == {
        "USER_ID": 1,
        "MESSAGE": "The «Yandex Telemost» application has access to Bitrix24 again. Nothing more is needed.",
        "TAG": "telemost_reauth_bitrix24",
    }


def test_an_employees_own_credential_tells_nobody(services, rest):
    portal = make_portal(services)
    admin_portal(services, portal, "ru")
    services.vault.store(
        "bitrix24", portal["member_id"], user_subject(2), fresh_pair(), portal_id=portal["id"], user_id=2
    )
    mine = services.vault.find("bitrix24", portal["member_id"], user_subject(2))
    ReauthNotifier(services.portals, translate).restored(mine)
    assert rest.of(portal["member_id"], "im.notify.system.add") == []
