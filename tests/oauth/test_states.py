"""Code-flow states and web sessions in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from app import create_app
from database import oauth_states, portals
from models.oauth_flow import CodeFlowRefused
from models.security import Identity
from tests.factories import make_portal


@pytest.fixture
def application(storage_config):
    """The app on a migrated database (SQLite, then PostgreSQL)."""
    app = create_app(storage_config)
    yield app
    app.extensions["db"].dispose()


@pytest.fixture
def flow(application):
    """The app's CodeFlow."""
    return application.extensions["code_flow"]


@pytest.fixture
def portal(application):
    """One installed portal."""
    return make_portal(application.extensions["services"], domain="acme.bitrix24.ru")


def used_at(flow):
    with flow.db.read() as conn:
        return conn.execute(sa.select(oauth_states.c.used_at)).scalar_one()


def test_a_state_is_spent_once_in_the_browser_that_started_it(flow, portal):
    state = flow.start(portal, "nonce-1")
    for nonce, code in ((None, "state_other_browser"), ("nonce-2", "state_other_browser")):
        with pytest.raises(CodeFlowRefused) as refused:
            flow.spend(state, nonce)
        assert refused.value.code == code
    assert used_at(flow) is None
    assert flow.spend(state, "nonce-1") == portal.id
    assert used_at(flow) is not None
    with pytest.raises(CodeFlowRefused) as replay:
        flow.spend(state, "nonce-1")
    assert replay.value.code == "state_used"


@pytest.mark.parametrize("tamper", ["", "no-dot", "abc.def", "x" * 300, "ф.ф"])
def test_a_forged_state_is_refused(flow, portal, tamper):
    flow.start(portal, "nonce-1")
    with pytest.raises(CodeFlowRefused) as refused:
        flow.spend(tamper, "nonce-1")
    assert (refused.value.code, refused.value.status) == ("state_invalid", 400)


def test_an_expired_state_is_refused(flow, portal):
    state = flow.start(portal, "nonce-1")
    with flow.db.write() as conn:
        conn.execute(sa.update(oauth_states).values(expires_at=1))
    with pytest.raises(CodeFlowRefused) as refused:
        flow.spend(state, "nonce-1")
    assert refused.value.code == "state_expired"


def test_concurrent_callbacks_have_one_winner(flow, portal):
    state = flow.start(portal, "nonce-1")
    results: list[str] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        try:
            flow.spend(state, "nonce-1")
            results.append("won")
        except CodeFlowRefused as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["state_used"] * 5 + ["won"]


def test_the_consent_url_has_no_redirect_uri(flow, portal):
    url = urlsplit(flow.authorize_url(portal, "local.app.1", "s.t"))
    assert (url.scheme, url.netloc, url.path) == ("https", "acme.bitrix24.ru", "/oauth/authorize/")
    assert parse_qs(url.query) == {"client_id": ["local.app.1"], "state": ["s.t"]}


def test_portal_lookup_refuses_unknown_and_uninstalled_portals(flow, portal):
    assert flow.portal_for_domain("ACME.bitrix24.ru").id == portal.id
    with pytest.raises(CodeFlowRefused) as unknown:
        flow.portal_for_domain("other.bitrix24.ru")
    assert (unknown.value.code, unknown.value.status, unknown.value.params) == (
        "app_not_on_portal",
        404,
        {"domain": "other.bitrix24.ru"},
    )
    with flow.db.write() as conn:
        conn.execute(sa.update(portals).values(status="uninstalled"))
    with pytest.raises(CodeFlowRefused) as gone:
        flow.portal_for_domain("acme.bitrix24.ru")
    assert gone.value.code == "app_not_on_portal"


def test_a_web_session_ends_with_the_install(flow, portal, application):
    identity = Identity(portal.member_id, 7, portal.id, portal.domain, "Анна", False)
    cookie, _ = flow.issue_web_session(identity)
    assert flow.web_identity(cookie)[0] == identity
    bearer, _ = application.extensions["services"].signer.issue(identity)
    with pytest.raises(CodeFlowRefused) as bearer_as_cookie:
        flow.web_identity(bearer)
    assert bearer_as_cookie.value.code == "no_web_session"
    with flow.db.write() as conn:
        conn.execute(sa.update(portals).values(status="uninstalled"))
    flow.portals.cache.clear()
    with pytest.raises(CodeFlowRefused) as gone:
        flow.web_identity(cookie)
    assert (gone.value.code, gone.value.status) == ("not_installed", 401)


@pytest.mark.parametrize(
    "query",
    [{}, {"state": "x"}, {"state": "ф.ф"}, {"state": "a.b", "code": "c" * 5000}, {"state": "a.b", "error": "x"}],
)
def test_bad_callbacks_get_a_400_page_never_a_500(application, query):
    response = application.test_client().get("/auth/bitrix24/callback", query_string=query)
    assert response.status_code == 400
    assert b'data-testid="error-page"' in response.data
