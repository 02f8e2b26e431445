"""The per-process caches of the authenticated API path: installed portals and verified session tokens."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

import models.security
from database import Database, make_url, portals
from models.install import GONE
from models.portal import PORTAL_CACHE_SECONDS, PortalCache
from models.security import Identity, InvalidSession, SessionSigner
from tests.factories import make_portal


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def session(services):
    """An installed portal and the bearer header of its user 2; yields (portal, headers)."""
    portal = make_portal(services)
    token, _ = services.signer.issue(Identity(portal.member_id, 2, portal.id, portal.domain, "Мария", False))
    return portal, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def portal_reads(services):
    """The SQL statements that read the portals table, as the app's engine runs them."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM portals" in statement:
            seen.append(statement)

    sa.event.listen(services.db.engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(services.db.engine, "before_cursor_execute", record)


def write_elsewhere(app, portal_id: int, **values) -> None:
    """Change a portal row through another engine, as another gunicorn worker would."""
    other = Database(make_url("", app.config["DATABASE_PATH"]), pool_size=1)
    try:
        with other.write() as conn:
            conn.execute(sa.update(portals).where(portals.c.id == portal_id).values(**values))
    finally:
        other.dispose()


def status_of(services, portal_id: int) -> str:
    """The portal's status as stored."""
    with services.db.read() as conn:
        return conn.execute(sa.select(portals.c.status).where(portals.c.id == portal_id)).scalar_one()


def test_bearer_reads_the_portal_once_per_ttl(client, session, portal_reads):
    _portal, headers = session
    assert client.get("/api/current-user", headers=headers).status_code == 200
    assert client.get("/api/current-user", headers=headers).status_code == 200
    assert client.get("/api/current-user", headers=headers).status_code == 200
    assert len(portal_reads) == 1


def test_uninstall_in_this_process_refuses_sessions_at_once(client, services, session, monkeypatch):
    portal, headers = session
    assert client.get("/api/current-user", headers=headers).status_code == 200  # now cached
    monkeypatch.setattr(services.install, "proof", lambda _portal: GONE)
    assert services.install.decide_uninstall(portal, False, actor="test").status == "uninstalled"
    response = client.get("/api/current-user", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert status_of(services, portal.id) == "uninstalled"


def test_any_portal_write_committed_in_this_process_clears_the_cache(client, services, session):
    portal, headers = session
    assert client.get("/api/current-user", headers=headers).status_code == 200
    # Written behind the models' back (CLI, another module): still seen by this process at once.
    with services.db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(status="uninstalled"))
    assert client.get("/api/current-user", headers=headers).status_code == 401


def test_a_write_that_rolls_back_changes_nothing(client, services, session, portal_reads):
    portal, headers = session
    assert client.get("/api/current-user", headers=headers).status_code == 200
    with pytest.raises(RuntimeError), services.db.write() as conn:
        conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(status="uninstalled"))
        raise RuntimeError("abort")
    assert client.get("/api/current-user", headers=headers).status_code == 200
    assert status_of(services, portal.id) == "installed"


def test_an_uninstall_by_another_process_is_seen_when_the_entry_expires(app, client, services, session):
    portal, headers = session
    clock = FakeClock()
    services.portals.cache.clock = clock
    assert client.get("/api/current-user", headers=headers).status_code == 200
    write_elsewhere(app, portal.id, status="uninstalled")
    clock.now += PORTAL_CACHE_SECONDS - 0.5
    assert client.get("/api/current-user", headers=headers).status_code == 200  # the documented window
    clock.now += 1.0
    assert client.get("/api/current-user", headers=headers).status_code == 401


def test_a_read_that_raced_a_commit_is_not_kept(services, session):
    portal, _headers = session
    cache = PortalCache()
    generation = cache.generation  # a lookup starts reading …
    cache.clear()  # … a write to portals commits …
    cache.put(portal, generation)  # … and the lookup's (old) row must not be kept
    assert cache.get(portal.id) is None
    cache.put(portal, cache.generation)
    assert cache.get(portal.id) == portal


def test_uninstalled_portals_are_not_cached(app, services):
    portal = make_portal(services, status="uninstalled")
    assert services.portals.session_portal(portal.id) is None
    write_elsewhere(app, portal.id, status="installed")  # a re-install handled by another worker
    assert services.portals.session_portal(portal.id) == services.portals.get(portal.id)


IDENTITY = Identity("member-1", 2, 7, "p.example", "Мария", False)


def test_a_verified_token_is_refused_once_it_expires():
    signer = SessionSigner("k" * 32, ttl_seconds=900)
    token, expires_at = signer.issue(IDENTITY, now=time.time() - 899)
    assert signer.verify(token) == IDENTITY
    assert signer.verify(token) == IDENTITY  # from the cache
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    with pytest.raises(InvalidSession):
        signer.verify(token)


def test_a_cached_token_does_not_vouch_for_a_forged_one():
    signer = SessionSigner("k" * 32, ttl_seconds=900)
    token, _ = signer.issue(IDENTITY)
    assert signer.verify(token) == IDENTITY
    other, _ = signer.issue(Identity("member-1", 1, 7, "p.example", "Админ", True))
    forged = ".".join(other.split(".")[:2] + token.split(".")[2:])  # user 1's claims, user 2's signature
    with pytest.raises(InvalidSession):
        signer.verify(forged)
    with pytest.raises(InvalidSession):
        SessionSigner("x" * 32, ttl_seconds=900).verify(token)  # another key never sees this cache


def test_the_verified_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(models.security, "VERIFIED_CACHE_SIZE", 2)
    signer = SessionSigner("k" * 32, ttl_seconds=900)
    tokens = [signer.issue(Identity("member-1", n, 7, "p.example", f"#{n}", False))[0] for n in range(1, 6)]
    for token in tokens:
        signer.verify(token)
    assert len(signer._verified) <= 2
    assert [signer.verify(token).user_id for token in tokens] == [1, 2, 3, 4, 5]
