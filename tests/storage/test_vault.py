"""The vault on SQLite and PostgreSQL: encryption at rest, CAS, leases, history, key rotation."""

import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from app import create_app
from database import credentials
from models.cipher import Cipher
from models.vault import ACTIVE, NEEDS_REAUTH, TokenSet


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
    assert vault.get(cid).unconfirmed_attempt, "taking over a dead holder's lease marks the outcome unknown"


def test_failures_count_to_needs_reauth(vault):
    cid = vault.store("amocrm", "acme", "account", pair(1))
    assert vault.claim_lease(cid, "w", 30)
    assert vault.record_failure(cid, "w", 1, "timeout", permanent=False, unconfirmed=True, threshold=2) == ACTIVE
    assert vault.get(cid).failure_count == 0 and vault.get(cid).unconfirmed_attempt
    assert vault.record_failure(cid, "w", 1, "invalid_grant", permanent=True, unconfirmed=False, threshold=2) == ACTIVE
    assert vault.record_failure(cid, "w", 1, "invalid_grant", permanent=True, unconfirmed=False,
                                threshold=2) == NEEDS_REAUTH
    assert vault.record_failure(cid, "w", 0, "x", permanent=True, unconfirmed=False, threshold=2) is None
    cred = vault.get(cid)
    assert (cred.status, cred.failure_count, cred.last_error, cred.lease_owner) == (NEEDS_REAUTH, 2,
                                                                                    "invalid_grant", None)
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
    args = {"now_ts": now, "ahead_seconds": 600, "recent_use_seconds": 7 * 86400,
            "renew_before_seconds": 30 * 86400, "provider": None}
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
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
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
