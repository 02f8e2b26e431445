"""The refresh engine's rules with a scripted provider: leases, CAS, retries, lost responses, re-auth."""

import threading
import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from database import credentials
from models.cipher import Cipher
from models.oauth import PERMANENT, TRANSIENT, OAuthError
from models.refresh import FRESH, LOCKED, REAUTH, REFRESHED, RefreshEngine, RefreshSettings
from models.vault import ACTIVE, BROKEN, NEEDS_REAUTH, TokenSet, Vault


class ScriptedProvider:
    """Answers refreshes from a script of outcomes; rotates like a real single-use server."""

    name = "bitrix24"

    def __init__(self, script=None, delay=0.0):
        self.script = list(script or [])
        self.calls = []
        self.delay = delay
        self.lock = threading.Lock()
        self.issued = 0

    def refresh(self, cred):
        with self.lock:
            self.calls.append(cred.refresh_token)
            step = self.script.pop(0) if self.script else "ok"
            self.issued += 1
            n = self.issued
        if self.delay:
            time.sleep(self.delay)
        if isinstance(step, OAuthError):
            raise step
        return TokenSet(f"a{n}", f"r{n}", int(time.time()) + 3600, int(time.time()) + 180 * 86400)


def timeout_error(unconfirmed=True):
    return OAuthError("timeout", TRANSIENT, unconfirmed=unconfirmed)


def grant_error():
    return OAuthError("invalid_grant", PERMANENT, status=400)


@pytest.fixture
def make_engine(services):
    def factory(provider, notifier=None, **settings):
        base = dict(max_attempts=3, backoff_seconds=0.001, failures_before_reauth=2, concurrency=4)
        base.update(settings)
        return RefreshEngine(
            services.vault,
            {"bitrix24": provider},
            RefreshSettings(**base),
            metrics=services.metrics,
            notifier=notifier,
            sleep=lambda s: None,
        )

    return factory


def due_credential(services, n=1):
    now = int(time.time())
    return services.vault.store("bitrix24", f"m{n}", "portal", TokenSet(f"a0-{n}", f"r0-{n}", now + 30, now + 10**7))


def test_due_credential_is_refreshed_once(services, make_engine):
    provider = ScriptedProvider()
    engine = make_engine(provider)
    cid = due_credential(services)
    assert engine.refresh(cid).result == REFRESHED
    cred = services.vault.get(cid)
    assert (cred.version, cred.access_token, cred.refresh_token, cred.lease_owner) == (2, "a1", "r1", None)
    assert engine.refresh(cid).result == FRESH, "a second call finds it fresh and spends nothing"
    assert provider.calls == ["r0-1"]


def test_transient_failures_retry_and_keep_the_pair(services, make_engine):
    provider = ScriptedProvider([OAuthError("http_503", TRANSIENT, status=503)] * 3)
    engine = make_engine(provider)
    cid = due_credential(services)
    outcome = engine.refresh(cid)
    assert outcome.result == "failed" and outcome.error == "http_503"
    assert len(provider.calls) == 3, "bounded by max_attempts"
    cred = services.vault.get(cid)
    assert (cred.status, cred.refresh_token, cred.failure_count, cred.version) == (ACTIVE, "r0-1", 0, 1)
    assert not cred.unconfirmed_attempt, "a 503 answer is a definite no: nothing was rotated"
    assert engine.refresh(cid).result == REFRESHED


def test_lost_response_is_flagged_not_looped(services, make_engine):
    told = []
    provider = ScriptedProvider([timeout_error(), grant_error(), grant_error()])
    engine = make_engine(provider, notifier=lambda cred, error: told.append((cred.id, error)))
    cid = due_credential(services)
    outcome = engine.refresh(cid)
    assert outcome.result == REAUTH and outcome.error == "lost_response"
    assert len(provider.calls) == 2, "invalid_grant right after an unknown outcome stops at once"
    cred = services.vault.get(cid)
    assert (cred.status, cred.last_error) == (NEEDS_REAUTH, "lost_response")
    assert told == [(cid, "lost_response")]
    assert engine.refresh(cid).result == REAUTH
    assert len(provider.calls) == 2


def test_lost_response_across_runs(services, make_engine):
    provider = ScriptedProvider([timeout_error()] * 3 + [grant_error()])
    engine = make_engine(provider)
    cid = due_credential(services)
    assert engine.refresh(cid).result == "failed"
    assert services.vault.get(cid).unconfirmed_attempt
    assert engine.refresh(cid).error == "lost_response"


def test_permanent_failures_reach_needs_reauth_at_threshold(services, make_engine):
    told = []
    provider = ScriptedProvider([grant_error(), grant_error()])
    engine = make_engine(provider, notifier=lambda cred, error: told.append(error))
    cid = due_credential(services)
    first = engine.refresh(cid)
    assert first.result == "failed" and services.vault.get(cid).failure_count == 1
    assert told == []
    second = engine.refresh(cid)
    assert second.result == REAUTH and told == ["invalid_grant"]
    assert len(provider.calls) == 2, "permanent errors are not retried within a call"


def test_lease_holder_blocks_others(services, make_engine):
    provider = ScriptedProvider()
    engine = make_engine(provider)
    cid = due_credential(services)
    assert services.vault.claim_lease(cid, "someone-else", 60)
    assert engine.refresh(cid).result == LOCKED
    assert provider.calls == []


def test_concurrent_refreshes_spend_the_token_once(services, make_engine):
    provider = ScriptedProvider(delay=0.05)
    engine = make_engine(provider)
    cid = due_credential(services)
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.refresh(cid).result)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.calls == ["r0-1"]
    assert results.count(REFRESHED) == 1
    assert set(results) <= {REFRESHED, LOCKED, FRESH}


def test_request_time_refresh_waits_for_the_peer(services, make_engine):
    provider = ScriptedProvider(delay=0.2)
    engine = make_engine(provider)
    cid = due_credential(services)
    stale = services.vault.get(cid)
    worker = threading.Thread(target=engine.refresh, args=(cid,))
    worker.start()
    time.sleep(0.05)
    renewed = engine.after_expired_token(stale)
    worker.join()
    assert renewed is not None and renewed.version == 2
    assert provider.calls == ["r0-1"]


def test_new_pair_arriving_during_refresh_wins(services, make_engine):
    cid = due_credential(services)

    class Racing(ScriptedProvider):
        def refresh(self, cred):
            now = int(time.time())
            services.vault.store("bitrix24", "m1", "portal", TokenSet("install", "install-r", now + 3600))
            return super().refresh(cred)

    engine = make_engine(Racing())
    assert engine.refresh(cid).result == FRESH
    assert services.vault.get(cid).refresh_token == "install-r"


def test_run_reports_and_records(services, make_engine):
    provider = ScriptedProvider([grant_error()])
    engine = make_engine(provider, failures_before_reauth=1, batch_size=7)
    ids = [due_credential(services, n) for n in range(20)]
    report = engine.run(trigger="test")
    assert (report.due, report.refreshed, report.failed, report.needs_reauth, report.left) == (20, 19, 1, 1, 0)
    assert sorted(provider.calls) == sorted(f"r0-{n}" for n in range(20))
    # Which credential drew the scripted failure depends on scheduling: exactly one did, the rest moved on.
    states = sorted((services.vault.get(cid).version, services.vault.get(cid).status) for cid in ids)
    assert states == [(1, NEEDS_REAUTH)] + [(2, ACTIVE)] * 19
    again = engine.run(trigger="test")
    assert (again.due, again.refreshed) == (0, 0)
    counters = {(n, labels): v for n, labels, v in services.metrics.counters()}
    assert counters[("refresh_success_total", 'provider="bitrix24"')] == 19


def test_run_respects_limit_and_budget(services, make_engine):
    engine = make_engine(ScriptedProvider(delay=0.05), concurrency=2)
    for n in range(10):
        due_credential(services, n)
    report = engine.run(limit=3)
    assert report.refreshed == 3 and report.left == 7
    report = engine.run(budget_s=0.01)
    assert report.budget_exhausted and report.left > 0


def test_lease_is_extended_before_a_late_attempt(services, make_engine):
    """A retry that starts after the lease ran low extends it first, so nobody else can claim meanwhile."""
    seen = []

    class SlowThenCheck(ScriptedProvider):
        def refresh(self, cred):
            if not self.calls:
                self.calls.append(cred.refresh_token)
                time.sleep(0.35)  # longer than the whole lease
                raise OAuthError("http_503", TRANSIENT, status=503)
            seen.append(services.vault.claim_lease(cred.id, "intruder", 60))
            return super().refresh(cred)

    engine = make_engine(SlowThenCheck(), lease_seconds=0.3)
    cid = due_credential(services)
    assert engine.refresh(cid).result == REFRESHED
    assert seen == [False], "the lease was ours again before the second request"


def test_a_lapsed_lease_stops_the_attempt(services, make_engine):
    class Slow(ScriptedProvider):
        def refresh(self, cred):
            if not self.calls:
                self.calls.append(cred.refresh_token)
                time.sleep(0.35)
                assert services.vault.claim_lease(cred.id, "new-holder", 60)  # took over the expired lease
                raise OAuthError("http_503", TRANSIENT, status=503)
            raise AssertionError("must not spend the token after losing the lease")

    engine = make_engine(Slow(), lease_seconds=0.3)
    cid = due_credential(services)
    assert engine.refresh(cid).result == LOCKED
    assert services.vault.get(cid).lease_owner == "new-holder"


# ---- finding 5: a row no configured key decrypts; leases left by a run that sent nothing -------------------


def foreign_credential(services, account="foreign"):
    """A due row written with a key the app does not hold (another deployment's, or a lost one)."""
    now = int(time.time())
    foreign = Vault(services.db, Cipher([Fernet.generate_key().decode()]))
    return foreign.store("bitrix24", account, "portal", TokenSet("fa", "fr", now + 30, now + 10**7))


def raw_row(services, cid):
    with services.db.read() as conn:
        return conn.execute(sa.select(credentials).where(credentials.c.id == cid)).first()


def test_a_foreign_key_row_is_quarantined_and_the_run_goes_on(services, make_engine):
    provider = ScriptedProvider()
    engine = make_engine(provider)
    healthy = [due_credential(services, n) for n in range(3)]
    broken = foreign_credential(services)
    report = engine.run()
    assert (report.due, report.refreshed, report.failed, report.needs_reauth, report.errors) == (
        4,
        3,
        1,
        0,
        {"undecryptable": 1},
    )
    assert sorted(provider.calls) == ["r0-0", "r0-1", "r0-2"], "nothing is sent for the broken row"
    row = raw_row(services, broken)
    assert (row.status, row.last_error, row.lease_owner, row.lease_until, row.version) == (
        BROKEN,
        "undecryptable",
        None,
        None,
        1,
    )
    for cid in healthy:
        cred = services.vault.get(cid)
        assert (cred.status, cred.version, cred.unconfirmed_attempt, cred.lease_owner) == (ACTIVE, 2, False, None)
    again = engine.run()
    assert (again.due, again.failed, again.errors) == (0, 0, {})


def test_leases_of_a_run_that_sent_nothing_are_taken_over_without_marking_unconfirmed(services, make_engine):
    seen_unconfirmed = []

    class Recording(ScriptedProvider):
        def refresh(self, cred):
            seen_unconfirmed.append(cred.unconfirmed_attempt)  # as the takeover left the row
            return super().refresh(cred)

    engine = make_engine(Recording())
    ids = [due_credential(services, n) for n in range(3)]
    assert len(services.vault.claim_many(ids, "dead-run", 0.01)) == 3  # the run died before sending
    time.sleep(0.05)
    assert engine.run().refreshed == 3
    assert seen_unconfirmed == [False, False, False]
    for cid in ids:
        cred = services.vault.get(cid)
        assert (cred.version, cred.unconfirmed_attempt) == (2, False)


@pytest.mark.parametrize(
    ("sent", "result", "error", "status"),
    [
        (False, "failed", "invalid_grant", ACTIVE),
        (True, REAUTH, "lost_response", NEEDS_REAUTH),
    ],
    ids=["died-before-sending", "died-after-sending"],
)
def test_invalid_grant_after_a_takeover_is_a_lost_response_only_if_a_request_went_out(
    services, make_engine, sent, result, error, status
):
    engine = make_engine(ScriptedProvider([grant_error()]), max_attempts=1)
    cid = due_credential(services)
    assert services.vault.claim_lease(cid, "dead", 0.01)
    if sent:
        assert services.vault.start_attempt(cid, "dead", 0.01) is not None
    time.sleep(0.05)
    outcome = engine.refresh(cid)
    assert (outcome.result, outcome.error) == (result, error)
    cred = services.vault.get(cid)
    assert (cred.status, cred.last_error, cred.lease_owner) == (status, error, None)


def test_request_time_refresh_of_a_foreign_key_row_is_a_clear_outcome(services, make_engine):
    from models.bitrix24 import Bitrix24Error, PortalClient

    provider = ScriptedProvider()
    engine = make_engine(provider)
    cid = foreign_credential(services)
    outcome = engine.refresh(cid, force=True)
    assert (outcome.result, outcome.error, outcome.credential.status) == ("broken", "undecryptable", BROKEN)
    assert engine.ensure_fresh(cid).status == BROKEN
    assert engine.after_expired_token(outcome.credential) is None
    client = PortalClient(services.portals.rest, services.vault, engine, "http://127.0.0.1:9/rest/", cid)
    with pytest.raises(Bitrix24Error) as refused:
        client.call("user.current")
    assert refused.value.code == "NO_CREDENTIAL"
    assert provider.calls == []
    row = raw_row(services, cid)
    assert (row.status, row.last_error, row.lease_owner) == (BROKEN, "undecryptable", None)


def test_request_time_claim_quarantines_and_gives_the_lease_back(services, make_engine):
    """The row turns unreadable between the look and the claim (e.g. a peer wrote it with another key)."""
    engine = make_engine(ScriptedProvider())
    cid = due_credential(services)
    real_get = services.vault.get
    looked = []

    def get_then_break(credential_id):
        cred = real_get(credential_id)
        if not looked:
            looked.append(cred)
            other = Cipher([Fernet.generate_key().decode()])
            with services.db.write() as conn:
                conn.execute(
                    sa.update(credentials)
                    .where(credentials.c.id == credential_id)
                    .values(access_token_enc=other.encrypt("x"), refresh_token_enc=other.encrypt("y"))
                )
        return cred

    services.vault.get = get_then_break
    try:
        outcome = engine.refresh(cid)
    finally:
        services.vault.get = real_get
    assert (outcome.result, outcome.error) == ("broken", "undecryptable")
    row = raw_row(services, cid)
    assert (row.status, row.lease_owner, row.lease_until) == (BROKEN, None, None)
