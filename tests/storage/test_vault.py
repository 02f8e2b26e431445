"""The vault on SQLite and PostgreSQL: encryption at rest, CAS, leases, history, key rotation."""

import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from app import create_app
from database import credentials
from models.cipher import Cipher
from models.vault import ACTIVE, BROKEN, NEEDS_REAUTH, TokenSet, Vault


@pytest.fixture
def storage_app(storage_config):
    application = create_app(storage_config)
    yield application
    application.extensions["db"].dispose()


@pytest.fixture
def vault(storage_app):
    return storage_app.extensions["services"].vault


def pair(n: int, ttl: int = 3600) -> TokenSet:
    return TokenSet(f"access-{n}", f"refresh-{n}", int(time.time()) + ttl, int(time.time()) + 180 * 86400)


def test_tokens_are_encrypted_at_rest(vault):
    cid = vault.store("bitrix24", "m1", "portal", pair(1))
    with vault.db.read() as conn:
        row = conn.execute(sa.select(credentials).where(credentials.c.id == cid)).first()
    assert "access-1" not in row.access_token_enc and "refresh-1" not in row.refresh_token_enc
    cred = vault.get(cid)
    assert (cred.access_token, cred.refresh_token, cred.version, cred.status) == ("access-1", "refresh-1", 1, ACTIVE)


def test_store_again_bumps_version_and_keeps_history(vault, storage_app):
    cid = vault.store("bitrix24", "m1", "portal", pair(1))
    for n in range(2, 10):
        assert vault.store("bitrix24", "m1", "portal", pair(n)) == cid
    cred = vault.get(cid)
    assert cred.version == 9 and cred.refresh_token == "refresh-9"
    history = vault.history(cid)
    keep = storage_app.config["TOKEN_HISTORY_KEEP"]
    assert [h["version"] for h in history] == list(range(8, 8 - keep, -1))
    assert history[0]["refresh_token"] == "refresh-8"


def test_commit_refresh_is_compare_and_swap(vault):
    cid = vault.store("yandex", "acc", "account", pair(1))
    assert vault.commit_refresh(cid, 1, pair(2))
    assert not vault.commit_refresh(cid, 1, pair(3)), "a stale version must not overwrite"
    cred = vault.get(cid)
    assert (cred.version, cred.refresh_token) == (2, "refresh-2")


def test_lease_is_exclusive_and_expires(vault):
    cid = vault.store("amocrm", "acme", "account", pair(1))
    assert vault.claim_lease(cid, "a", 30)
    assert not vault.claim_lease(cid, "b", 30)
    vault.release_lease(cid, "b")  # not the holder: nothing happens
    assert not vault.claim_lease(cid, "b", 30)
    vault.release_lease(cid, "a")
    assert vault.claim_lease(cid, "b", 0.01)
    time.sleep(0.05)
    assert vault.claim_lease(cid, "c", 30), "an expired lease can be taken over"


def test_taking_over_a_lease_marks_unconfirmed_only_when_its_holder_sent_a_request(vault):
    """A holder that died before sending spent nothing; one that died after sending may have rotated the pair."""
    cid = vault.store("amocrm", "acme", "account", pair(1))
    assert vault.claim_lease(cid, "queued", 0.01)
    time.sleep(0.05)
    assert vault.claim_lease(cid, "next", 0.01), "an expired lease can be taken over"
    assert not vault.get(cid).unconfirmed_attempt, "no request was sent under the dead lease"
    assert vault.start_attempt(cid, "next", 0.01) is not None
    assert vault.get(cid).lease_owner == "next"
    time.sleep(0.05)
    assert vault.claim_lease(cid, "third", 30)
    cred = vault.get(cid)
    assert (cred.unconfirmed_attempt, cred.lease_owner) == (True, "third")
    assert vault.start_attempt(cid, "next", 30) is None, "a lapsed holder cannot start a request"


def test_a_released_or_settled_lease_leaves_nothing_to_misread(vault):
    cid = vault.store("amocrm", "acme", "account", pair(1))
    assert vault.claim_lease(cid, "a", 30)
    assert vault.start_attempt(cid, "a", 30) is not None
    vault.release_lease(cid, "a")  # the answer was seen (e.g. a peer's newer pair won)
    with vault.db.read() as conn:
        assert conn.execute(sa.select(credentials.c.refresh_sent_at)).scalar_one() is None
    assert vault.claim_lease(cid, "b", 0.01)
    time.sleep(0.05)
    assert vault.claim_lease(cid, "c", 30)
    assert not vault.get(cid).unconfirmed_attempt


def test_failures_count_to_needs_reauth(vault):
    cid = vault.store("amocrm", "acme", "account", pair(1))
    assert vault.claim_lease(cid, "w", 30)
    assert vault.record_failure(cid, "w", 1, "timeout", permanent=False, unconfirmed=True, threshold=2) == ACTIVE
    assert vault.get(cid).failure_count == 0 and vault.get(cid).unconfirmed_attempt
    assert vault.record_failure(cid, "w", 1, "invalid_grant", permanent=True, unconfirmed=False, threshold=2) == ACTIVE
    assert (
        vault.record_failure(cid, "w", 1, "invalid_grant", permanent=True, unconfirmed=False, threshold=2)
        == NEEDS_REAUTH
    )
    assert vault.record_failure(cid, "w", 0, "x", permanent=True, unconfirmed=False, threshold=2) is None
    cred = vault.get(cid)
    assert (cred.status, cred.failure_count, cred.last_error, cred.lease_owner) == (
        NEEDS_REAUTH,
        2,
        "invalid_grant",
        None,
    )
    assert not vault.claim_lease(cid, "w", 30), "needs_reauth credentials are never refreshed"
    vault.store("amocrm", "acme", "account", pair(2))
    assert vault.get(cid).status == ACTIVE and vault.get(cid).failure_count == 0


def test_due_selection_streams_in_pages(vault):
    now = int(time.time())
    due_ids = []
    for n in range(25):
        due_ids.append(vault.store("bitrix24", f"m{n}", "portal", pair(n, ttl=60)))
    vault.store("bitrix24", "later", "portal", pair(99, ttl=7200))
    stale = vault.store("bitrix24", "idle", "portal", pair(98, ttl=60))
    with vault.db.write() as conn:
        conn.execute(sa.update(credentials).where(credentials.c.id == stale).values(last_used_at=now - 30 * 86400))
    args = {
        "now_ts": now,
        "ahead_seconds": 600,
        "recent_use_seconds": 7 * 86400,
        "renew_before_seconds": 30 * 86400,
        "provider": None,
    }
    seen, after = [], None
    while page := vault.due_page(after=after, limit=10, **args):
        seen += [cid for _, cid in page]
        after = page[-1]
    assert sorted(seen) == sorted(due_ids), "idle and fresh credentials are not due"
    assert vault.count_due(**args) == 25
    # A refresh token close to its end of life is due even when idle.
    with vault.db.write() as conn:
        conn.execute(sa.update(credentials).where(credentials.c.id == stale).values(refresh_expires_at=now + 86400))
    assert vault.count_due(**args) == 26


def test_rotate_key_re_encrypts(storage_config, tmp_path):
    old_key = storage_config["TOKEN_ENCRYPTION_KEY"]
    application = create_app(storage_config)
    vault = application.extensions["services"].vault
    cid = vault.store("yandex", "acc", "account", pair(1))
    vault.store("yandex", "acc", "account", pair(2))
    application.extensions["db"].dispose()

    new_key = Fernet.generate_key().decode()
    rotated = create_app(dict(storage_config, TOKEN_ENCRYPTION_KEY=f"{new_key},{old_key}", AUTO_MIGRATE=False))
    result = rotated.test_cli_runner().invoke(args=["tokens", "rotate-key"])
    assert result.exit_code == 0 and "re-encrypted 2 rows" in result.output
    rotated.extensions["db"].dispose()

    only_new = create_app(dict(storage_config, TOKEN_ENCRYPTION_KEY=new_key, AUTO_MIGRATE=False))
    vault2 = only_new.extensions["services"].vault
    assert vault2.get(cid).refresh_token == "refresh-2"
    assert vault2.history(cid)[0]["refresh_token"] == "refresh-1"
    with pytest.raises(InvalidToken):  # the old key alone cannot read rotated rows
        Cipher([old_key]).decrypt(_raw_access(only_new, cid))
    only_new.extensions["db"].dispose()


def _raw_access(application, cid):
    db = application.extensions["db"]
    with db.read() as conn:
        return conn.execute(sa.select(credentials.c.access_token_enc).where(credentials.c.id == cid)).scalar_one()


def test_schema_and_integrity(storage_app):
    db = storage_app.extensions["db"]
    db.ping()
    if db.is_sqlite:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_concurrent_stores_of_one_identity_queue(vault):
    """Two tabs opening the app at once: every pair is stored once, versions never collide."""
    import threading

    errors = []

    def put(n):
        try:
            vault.store("bitrix24", "m1", "user:7", pair(n))
        except Exception as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cred = vault.find("bitrix24", "m1", "user:7")
    assert cred.version == 8
    versions = [h["version"] for h in vault.history(cred.id)]
    assert versions == sorted(set(versions), reverse=True)


# ---- rows no configured key decrypts (finding 5) ---------------------------------------------------------------


def foreign_vault(vault) -> Vault:
    """The same database seen with a key the app does not hold."""
    return Vault(vault.db, Cipher([Fernet.generate_key().decode()]))


def stored_row(vault, cid):
    with vault.db.read() as conn:
        return conn.execute(sa.select(credentials).where(credentials.c.id == cid)).first()


def test_readers_get_an_undecryptable_row_as_broken_and_it_is_quarantined(vault):
    healthy = vault.store("yandex", "ok", "account", pair(1), portal_id=None)
    broken = foreign_vault(vault).store("yandex", "lost", "account", pair(2))
    cred = vault.get(broken)
    assert (cred.status, cred.last_error, cred.access_token, cred.refresh_token) == (BROKEN, "undecryptable", "", None)
    row = stored_row(vault, broken)
    assert (row.status, row.last_error) == (BROKEN, "undecryptable")
    assert vault.find("yandex", "lost", "account").status == BROKEN
    assert vault.get(healthy).access_token == "access-1"
    assert [r["status"] for r in vault.list(provider="yandex")] == [ACTIVE, BROKEN]
    assert vault.summary() == {"yandex": {ACTIVE: 1, BROKEN: 1}}
    assert vault.delete(broken), "a broken row can still be removed"


def test_claiming_an_undecryptable_row_quarantines_it_and_gives_the_lease_back(vault):
    broken = foreign_vault(vault).store("amocrm", "lost", "account", pair(1))
    cred = vault.claim(broken, "worker", 30)
    assert (cred.status, cred.last_error) == (BROKEN, "undecryptable")
    row = stored_row(vault, broken)
    assert (row.status, row.lease_owner, row.lease_until) == (BROKEN, None, None)
    assert vault.claim(broken, "worker", 30) is None, "broken rows are never claimed again"
    assert vault.claim_many([broken], "run", 30) == []


def test_quarantine_never_marks_a_pair_stored_meanwhile(vault):
    cid = foreign_vault(vault).store("amocrm", "acme", "account", pair(1))
    vault.store("amocrm", "acme", "account", pair(2))  # re-authorised with the current key: version 2
    assert not vault.quarantine(cid, 1)
    cred = vault.get(cid)
    assert (cred.status, cred.version, cred.access_token) == (ACTIVE, 2, "access-2")


def test_a_fresh_grant_heals_a_broken_row(vault):
    cid = foreign_vault(vault).store("amocrm", "acme", "account", pair(1))
    assert vault.get(cid).status == BROKEN
    vault.store("amocrm", "acme", "account", pair(2))
    cred = vault.get(cid)
    assert (cred.status, cred.last_error, cred.access_token) == (ACTIVE, None, "access-2")


def test_rotate_key_skips_foreign_rows_and_revives_rows_whose_key_is_back(vault, storage_app):
    lost_key = Fernet.generate_key().decode()
    lost = Vault(vault.db, Cipher([lost_key]))
    ok = vault.store("amocrm", "ok", "account", pair(1))
    cid = lost.store("amocrm", "acme", "account", pair(2))
    assert vault.get(cid).status == BROKEN
    assert vault.rotate_key() == 1, "only the row the keys decrypt is re-encrypted"
    assert vault.get(ok).access_token == "access-1"
    row = stored_row(vault, cid)
    assert (row.status, row.last_error) == (BROKEN, "undecryptable")

    app_key = storage_app.config["TOKEN_ENCRYPTION_KEY"]
    restored = Vault(vault.db, Cipher([app_key, lost_key]))  # the lost key is put back, after the current one
    assert restored.rotate_key() == 2
    cred = restored.get(cid)
    assert (cred.status, cred.last_error, cred.access_token) == (ACTIVE, None, "access-2")
