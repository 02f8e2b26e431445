"""Each sandbox fault knob against the refresh engine over real HTTP, for every provider.

What must hold: the failure gets the right class, retries stay bounded, no pair is ever lost, and after the
threshold a credential is needs_reauth and its portal's admin hears about it once. The sandbox
(`python -m sandbox`) runs once for the module; the app is built in-process per test on a fresh database.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pytest

from app import create_app
from models.oauth import PROVIDERS
from models.vault import ACTIVE, NEEDS_REAUTH, PORTAL_SUBJECT
from tests.conftest import SandboxControl, make_config
from tests.factories import make_credential
from tests.integration.helpers import install_event_form

ERROR_MODES = ("5xx", "429", "503")
# The error code each provider's stand-in answers a fault with (bodies as the real services send them).
ERROR_CODES = {
    "bitrix24": {"5xx": "INTERNAL_SERVER_ERROR", "429": "QUERY_LIMIT_EXCEEDED", "503": "QUERY_LIMIT_EXCEEDED"},
    "yandex": {"5xx": "server_error", "429": "too_many_requests", "503": "temporarily_unavailable"},
    "amocrm": {"5xx": "http_500", "429": "http_429", "503": "http_503"},
}
MAX_ATTEMPTS = 3
HTTP_TIMEOUT = 1.0
AMO_SUBDOMAIN = "faultcrm"


@pytest.fixture
def sb(sandbox):
    """conftest's sandbox (reset around every test)."""
    return sandbox


@pytest.fixture
def config(tmp_path, sb):
    """Overrides conftest's config: the app talks to the sandbox."""
    return make_config(
        tmp_path,
        **sb.app_config(
            HTTP_TIMEOUT_SECONDS=HTTP_TIMEOUT,
            REFRESH_BACKOFF_SECONDS=0.01,
            REFRESH_MAX_ATTEMPTS=MAX_ATTEMPTS,
            REFRESH_FAILURES_BEFORE_REAUTH=2,
            REFRESH_AHEAD_SECONDS=600,
        ),
    )


@pytest.fixture
def app(config):
    """Overrides conftest's app: also closes the HTTP session (real sockets were opened)."""
    application = create_app(config)
    yield application
    application.extensions["services"].bitrix_oauth.session.close()
    application.extensions["db"].dispose()


# ---- set-up helpers -------------------------------------------------------------------------------------


@dataclass
class Subject:
    """The credential under test and where to look for its traces."""

    provider: str
    credential_id: int
    grant_id: str
    portal: InstalledPortal | None = None


@dataclass
class InstalledPortal:
    """A sandbox portal with the app installed in-process and opened once by its admin (user 1).

    Opening it leaves the admin's own pair in the vault: a second working token to carry notifications.
    """

    name: str
    member_id: str
    id: int
    credential_id: int  # the portal credential, from the install
    grant_id: str  # that credential's grant at the sandbox


def install_portal(sb: SandboxControl, client, services, *, access_ttl: int = 3600) -> InstalledPortal:
    """New sandbox portal; ONAPPINSTALL posted to the app with a minted admin pair; the admin opens the app."""
    name = sb.control("POST", "/portals", {}, expect=201)["name"]
    tokens = sb.mint("bitrix24", portal=name, user_id=1, expires_in=access_ttl)
    form = install_event_form(
        None, tokens, application_token=secrets.token_hex(16), **{"auth[expires_in]": str(tokens["expires_in"])}
    )
    installed = client.post("/install", data=form)
    assert installed.status_code == 200, installed.get_json()
    member_id = tokens["member_id"]
    opened = sb.mint("bitrix24", portal=name, user_id=1)
    page = client.post(
        "/",
        query_string={"DOMAIN": opened["domain"], "PROTOCOL": "0", "LANG": "ru", "APP_SID": "sid"},
        data={
            "AUTH_ID": opened["access_token"],
            "AUTH_EXPIRES": "3600",
            "REFRESH_ID": opened["refresh_token"],
            "SERVER_ENDPOINT": opened["server_endpoint"],
            "member_id": member_id,
            "status": "L",
            "APPLICATION_TOKEN": form["auth[application_token]"],
            "PLACEMENT": "DEFAULT",
        },
    )
    assert page.status_code == 200, page.text
    portal = services.portals.get_by_member(member_id)
    own = services.vault.find("bitrix24", member_id, "user:1")
    assert own is not None and own.refresh_token == opened["refresh_token"]
    cred = services.vault.find("bitrix24", member_id, PORTAL_SUBJECT)
    assert cred.refresh_token == tokens["refresh_token"]
    return InstalledPortal(name, member_id, portal.id, cred.id, tokens["grant_id"])


def store_due(sb: SandboxControl, services, provider: str, *, portal_id: int | None = None) -> Subject:
    """A minted pair stored in the vault as a credential that is due (expires within REFRESH_AHEAD_SECONDS)."""
    minted = sb.mint(provider, **({"subdomain": AMO_SUBDOMAIN} if provider == "amocrm" else {}))
    account = {"bitrix24": "member_id", "yandex": "user_id", "amocrm": "subdomain"}[provider]
    cid = make_credential(
        services,
        provider,
        str(minted[account]),
        access=minted["access_token"],
        refresh=minted["refresh_token"],
        expires_in=60,
        portal_id=portal_id,
        endpoint=minted.get("server_endpoint"),
    )
    assert services.engine.is_due(services.vault.get(cid))
    return Subject(provider, cid, minted["grant_id"])


def subject_on_portal(sb: SandboxControl, client, services, provider: str) -> Subject:
    """A due credential that belongs to an installed portal (so its admin can be told about it).

    For Bitrix24 it is the portal credential itself (installed with a short-lived access token); for
    Yandex and amoCRM an account credential attached to the portal.
    """
    if provider == "bitrix24":
        portal = install_portal(sb, client, services, access_ttl=90)
        return Subject(provider, portal.credential_id, portal.grant_id, portal)
    portal = install_portal(sb, client, services)
    subject = store_due(sb, services, provider, portal_id=portal.id)
    subject.portal = portal
    return subject


def counters(services) -> dict[tuple[str, str], int]:
    """The metric counters as {(name, labels): value}."""
    services.engine.flush()
    return {(name, labels): value for name, labels, value in services.metrics.counters()}


def failures(services, provider: str, error_class: str) -> int:
    """refresh_failures_total for one provider and error class."""
    return counters(services).get(("refresh_failures_total", f'error_class="{error_class}",provider="{provider}"'), 0)


def notifications(sb: SandboxControl, portal: InstalledPortal) -> list[dict]:
    """im.notify.system.add calls the app made on the portal (the state keeps one per TAG; the log keeps all)."""
    return [
        c["params"]
        for c in sb.control("GET", f"/portals/{portal.name}/calls")
        if c["method"] == "im.notify.system.add" and c["status"] == 200
    ]


def assert_unspent(sb: SandboxControl, services, subject: Subject) -> None:
    """The stored pair is still the grant's newest one: nothing was rotated, nothing is lost."""
    cred = services.vault.get(subject.credential_id)
    grant = sb.grant(subject.grant_id)
    assert (grant["rotations"], grant["refresh_token"]) == (0, cred.refresh_token)
    assert (cred.status, cred.version, cred.failure_count) == (ACTIVE, 1, 0)


def assert_refreshed_once(sb: SandboxControl, services, subject: Subject) -> None:
    """Exactly one rotation at the sandbox, stored as the new version; no refresh token was reused."""
    cred = services.vault.get(subject.credential_id)
    grant = sb.grant(subject.grant_id)
    counted = sb.refreshes(subject.provider)
    assert (counted["total"], counted["by_grant"]) == (1, {subject.grant_id: 1})
    assert counted["reuse_attempts"] == 0
    assert grant["rotations"] == 1
    assert (grant["refresh_token"], grant["access_token"]) == (cred.refresh_token, cred.access_token)
    assert (cred.status, cred.version, cred.failure_count, cred.unconfirmed_attempt) == (ACTIVE, 2, 0, False)


# ---- transient knobs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_latency_below_the_timeout_still_refreshes(sb, services, provider):
    subject = store_due(sb, services, provider)
    sb.fault(provider, "latency", count=1, value=0.3)
    report = services.engine.run(trigger="test")
    assert (report.due, report.refreshed, report.failed) == (1, 1, 0)
    assert_refreshed_once(sb, services, subject)
    assert failures(services, provider, "transient") == 0


@pytest.mark.parametrize("mode", ERROR_MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_error_answer_is_retried_then_refreshed(sb, services, provider, mode):
    subject = store_due(sb, services, provider)
    sb.fault(provider, mode, count=1)
    report = services.engine.run(trigger="test")
    assert (report.refreshed, report.failed, report.errors) == (1, 0, {})
    assert_refreshed_once(sb, services, subject)
    seen = counters(services)
    assert seen[("refresh_attempts_total", f'provider="{provider}"')] == 2
    assert seen[("refresh_success_total", f'provider="{provider}"')] == 1
    assert failures(services, provider, "transient") == 1


@pytest.mark.parametrize("mode", ERROR_MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_answers_on_every_attempt_keep_the_old_pair(sb, services, provider, mode):
    subject = store_due(sb, services, provider)
    sb.fault(provider, mode, count=MAX_ATTEMPTS + 1)
    outcome = services.engine.refresh(subject.credential_id)
    assert (outcome.result, outcome.error) == ("failed", ERROR_CODES[provider][mode])
    [left] = sb.control("GET", "/faults")
    assert (left["hits"], left["count"]) == (MAX_ATTEMPTS, 1), "retries are bounded by REFRESH_MAX_ATTEMPTS"
    assert failures(services, provider, "transient") == MAX_ATTEMPTS
    assert failures(services, provider, "permanent") == 0
    assert_unspent(sb, services, subject)
    cred = services.vault.get(subject.credential_id)
    assert cred.last_error == outcome.error and cred.lease_owner is None
    # A 5xx may come after the provider rotated (its own crash, a gateway timeout): remembered as
    # unconfirmed. 429/503 are refusals before any work.
    assert cred.unconfirmed_attempt == (mode == "5xx")
    # Once the provider is back, the kept pair works.
    sb.control("DELETE", "/faults")
    assert services.engine.refresh(subject.credential_id).result == "refreshed"
    assert_refreshed_once(sb, services, subject)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_timeout_is_retried_and_loses_no_pair(sb, services, provider):
    subject = store_due(sb, services, provider)
    sb.fault(provider, "timeout", count=1, value=HTTP_TIMEOUT + 0.5)
    started = time.monotonic()
    outcome = services.engine.refresh(subject.credential_id)
    assert outcome.result == "refreshed"
    assert time.monotonic() - started >= HTTP_TIMEOUT, "the first attempt waited for HTTP_TIMEOUT_SECONDS"
    assert_refreshed_once(sb, services, subject)
    assert failures(services, provider, "transient") == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeouts_on_every_attempt_keep_a_usable_pair(sb, services, provider):
    subject = store_due(sb, services, provider)
    sb.fault(provider, "timeout", count=MAX_ATTEMPTS + 1, value=HTTP_TIMEOUT + 0.2)
    report = services.engine.run(trigger="test")
    assert (report.refreshed, report.failed, report.needs_reauth, report.errors) == (0, 1, 0, {"timeout": 1})
    [left] = sb.control("GET", "/faults")
    assert left["hits"] == MAX_ATTEMPTS
    assert_unspent(sb, services, subject)
    cred = services.vault.get(subject.credential_id)
    assert cred.unconfirmed_attempt, "a timed-out request may have been processed: remembered for later"
    sb.control("DELETE", "/faults")
    # The sandbox never processed those requests, so the kept pair must still refresh cleanly.
    assert services.engine.refresh(subject.credential_id).result == "refreshed"
    assert_refreshed_once(sb, services, subject)


# ---- a lost answer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rotated_pair_with_a_lost_answer_ends_in_needs_reauth(sb, client, services, provider):
    subject = subject_on_portal(sb, client, services, provider)
    sb.fault(provider, "drop_after_rotate", count=1)
    report = services.engine.run(trigger="test")
    assert (report.refreshed, report.needs_reauth, report.errors) == (0, 1, {"lost_response": 1})
    cred = services.vault.get(subject.credential_id)
    assert (cred.status, cred.last_error, cred.version) == (NEEDS_REAUTH, "lost_response", 1)
    counted = sb.refreshes(provider)
    assert counted["by_grant"] == {subject.grant_id: 1}, "the provider did rotate once"
    assert counted["reuse_by_grant"] == {subject.grant_id: 1}, "one retry with the spent token, then stop"
    assert failures(services, provider, "lost_response") == 1
    assert counters(services)[("credentials_needs_reauth_total", f'provider="{provider}"')] == 1
    [note] = notifications(sb, subject.portal)
    assert (str(note["USER_ID"]), note["TAG"]) == ("1", f"telemost_reauth_{provider}")
    assert "lost_response" in note["MESSAGE"]
    # Never looped: later runs leave it alone and tell nobody again.
    again = services.engine.run(trigger="test")
    assert (again.due, again.refreshed, again.failed) == (0, 0, 0)
    assert services.engine.refresh(subject.credential_id, force=True).result == "needs_reauth"
    assert sb.refreshes(provider)["reuse_by_grant"] == {subject.grant_id: 1}
    assert len(notifications(sb, subject.portal)) == 1


# ---- permanent errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_revoked_grant_counts_up_to_needs_reauth(sb, client, services, provider):
    subject = subject_on_portal(sb, client, services, provider)
    sb.control("POST", f"/oauth/grants/{subject.grant_id}/revoke")
    first = services.engine.run(trigger="test")
    assert (first.failed, first.needs_reauth, first.errors) == (1, 0, {"invalid_grant": 1})
    cred = services.vault.get(subject.credential_id)
    assert (cred.status, cred.failure_count, cred.last_error) == (ACTIVE, 1, "invalid_grant")
    assert notifications(sb, subject.portal) == []
    second = services.engine.run(trigger="test")
    assert (second.failed, second.needs_reauth, second.errors) == (1, 1, {"invalid_grant": 1})
    cred = services.vault.get(subject.credential_id)
    assert (cred.status, cred.failure_count) == (NEEDS_REAUTH, 2)
    assert len(notifications(sb, subject.portal)) == 1
    assert services.engine.run(trigger="test").due == 0
    assert len(notifications(sb, subject.portal)) == 1, "told once"
    seen = counters(services)
    assert seen[("refresh_attempts_total", f'provider="{provider}"')] == 2, "a permanent error is not retried"
    assert failures(services, provider, "permanent") == 2
    assert failures(services, provider, "transient") == 0
    assert sb.refreshes(provider)["total"] == 0
    alerts = services.portals.alerts(subject.portal.id)
    assert [(a["code"], a["provider"], a["error"]) for a in alerts] == [("needs_reauth", provider, "invalid_grant")]


@pytest.mark.parametrize("status", [401, 200])
def test_payment_required_is_permanent(sb, client, services, status):
    portal = install_portal(sb, client, services, access_ttl=90)
    sb.control("POST", "/config", {"payment_required_status": status})
    sb.control("POST", f"/portals/{portal.name}/payment", {"required": True})
    outcome = services.engine.refresh(portal.credential_id)
    assert (outcome.result, outcome.error) == ("failed", "PAYMENT_REQUIRED")
    cred = services.vault.get(portal.credential_id)
    assert (cred.status, cred.failure_count, cred.unconfirmed_attempt) == (ACTIVE, 1, False)
    assert failures(services, "bitrix24", "permanent") == 1
    assert counters(services)[("refresh_attempts_total", 'provider="bitrix24"')] == 1, "not retried"
    assert services.engine.refresh(portal.credential_id).result == "needs_reauth"
    assert sb.grant(portal.grant_id)["rotations"] == 0
