"""Two hosts' cron runs re-check the same pending uninstall at once (issue 11 §3).

Both get the proof (the app is gone) before either acts: the portal must be uninstalled once — one
revocation, one audit entry — and the second host must not record a refusal for a portal its peer has
just uninstalled. Runs on SQLite and on PostgreSQL (two app instances on one database = two hosts).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app import create_app
from database import audit_log, portals
from models.install import GONE, UNVERIFIABLE, InstallService, recheck_pending_uninstalls
from tests.factories import make_portal


@pytest.fixture
def two_apps(storage_config):
    """Host A and host B: two app instances on the same database."""
    first = create_app(storage_config)
    second = create_app(dict(storage_config, AUTO_MIGRATE=False))
    yield first, second
    for app in (first, second):
        app.extensions["db"].dispose()


@pytest.mark.parametrize("second_verdict", [GONE, UNVERIFIABLE], ids=["both-proven", "peer-already-revoked"])
def test_pending_uninstall_rechecked_on_two_hosts_at_once_is_done_once(two_apps, monkeypatch, second_verdict):
    a, b = two_apps
    portal = make_portal(a.extensions["services"], uninstall_pending_at=int(time.time()) - 60)
    both_asked = threading.Barrier(2)
    verdicts = iter([GONE, second_verdict])
    lock = threading.Lock()

    def proof(self, pending):
        with lock:
            verdict = next(verdicts)
        both_asked.wait(timeout=10)  # neither host acts before both have their answer
        if verdict != GONE:
            time.sleep(0.2)  # the peer's uninstall (revoking our credential) lands first
        return verdict

    monkeypatch.setattr(InstallService, "proof", proof)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda app: recheck_pending_uninstalls(app.extensions["services"].install), (a, b)))

    with a.extensions["db"].read() as conn:
        actions = [
            r.action for r in conn.execute(sa.select(audit_log.c.action).where(audit_log.c.target == portal.member_id))
        ]
        row = conn.execute(sa.select(portals).where(portals.c.id == portal.id)).one()
    assert actions == ["portal_uninstalled"], "uninstalled once, and never refused after the peer did it"
    assert (row.status, row.uninstall_pending_at) == ("uninstalled", None)
    assert sorted(r["refused"] for r in reports) == [0, 0]
    assert sum(r["uninstalled"] for r in reports) == 2  # both runs see the portal gone
