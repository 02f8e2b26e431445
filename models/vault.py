"""The credential vault: every OAuth credential the app holds, encrypted at rest, versioned.

One table for all providers. Each row carries its version (bumped on every new pair), a lease
(`lease_owner`, `lease_until`) that gives one refresher at a time the right to spend the refresh
token, and failure tracking. Replaced pairs go to `credential_history` (newest TOKEN_HISTORY_KEEP).
All writes are short transactions; no transaction is ever held across network I/O.

A row whose tokens no configured key can decrypt (written with a key we no longer hold) is
quarantined: status `broken`, last_error `undecryptable`, lease released. Readers get it back with
that status and no tokens instead of an exception, so one such row never stops a run or a listing;
a fresh grant (store) or the key put back plus `flask tokens rotate-key` brings it back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.fernet import InvalidToken

from database import Database, after_commit, credential_history, credentials, now
from models.cipher import Cipher

log = logging.getLogger(__name__)

ACTIVE = "active"
NEEDS_REAUTH = "needs_reauth"
REVOKED = "revoked"
BROKEN = "broken"
STATUSES = (ACTIVE, NEEDS_REAUTH, REVOKED, BROKEN)
UNDECRYPTABLE = "undecryptable"

PORTAL_SUBJECT = "portal"
ACCOUNT_SUBJECT = "account"
# How long the restored-credential announcement waits for the storing transaction to commit; a caller
# that rolled back never commits, and the announcement is dropped after this.


def user_subject(user_id: int) -> str:
    """The subject of a per-user Bitrix24 credential."""
    return f"user:{int(user_id)}"


# The hot statements of the refresh path, built once: constructing SQLAlchemy statements per call
# costs more CPU than executing them (bench/refresh.py). Bind names are prefixed to stay clear of
# column names.
_c = credentials.c
_h = credential_history.c
_SELECT_ONE = sa.select(credentials).where(_c.id == sa.bindparam("b_id"))
_SELECT_BY_IDENTITY = sa.select(credentials).where(
    _c.provider == sa.bindparam("b_provider"),
    _c.account == sa.bindparam("b_account"),
    _c.subject == sa.bindparam("b_subject"),
)
# store() reads the row it will replace under a row lock (PostgreSQL), so two pairs arriving at once
# (two tabs opening the app) queue instead of both writing version n+1.
_LOCK_BY_IDENTITY = _SELECT_BY_IDENTITY.with_for_update()
_LEASE_FREE = sa.or_(_c.lease_until.is_(None), _c.lease_until < sa.bindparam("b_now"))
_TAKE_LEASE = {
    "lease_owner": sa.bindparam("b_owner"),
    "lease_until": sa.bindparam("b_until"),
    # Taking over an expired lease whose holder had started a request (refresh_sent_at) means it died
    # mid-refresh: the provider may have rotated the pair, so the next invalid_grant means a lost
    # response. A holder that died before sending anything (queued, crashed run) spent nothing.
    "unconfirmed_attempt": sa.case(
        (sa.and_(_c.lease_owner.is_not(None), _c.refresh_sent_at.is_not(None)), sa.true()),
        else_=_c.unconfirmed_attempt,
    ),
    "refresh_sent_at": None,
}
_CLAIM_ONE = (
    sa.update(credentials)
    .where(_c.id == sa.bindparam("b_id"), _c.status == ACTIVE, _LEASE_FREE)
    .values(**_TAKE_LEASE)
    .returning(*credentials.c)
)
_CLAIM_MANY = (
    sa.update(credentials)
    .where(_c.id.in_(sa.bindparam("b_ids", expanding=True)), _c.status == ACTIVE, _LEASE_FREE)
    .values(**_TAKE_LEASE)
    .returning(*credentials.c)
)
_RELEASE_LEASE = (
    sa.update(credentials)
    .where(_c.id == sa.bindparam("b_id"), _c.lease_owner == sa.bindparam("b_owner"))
    .values(lease_owner=None, lease_until=None, refresh_sent_at=None)
)
# Written (durably) right before refresh requests go out: the leases are ours for another full term,
# and a holder taking a lease over after we die knows a request may have reached the provider.
_START_ATTEMPTS = (
    sa.update(credentials)
    .where(_c.id.in_(sa.bindparam("b_ids", expanding=True)), _c.lease_owner == sa.bindparam("b_owner"))
    .values(lease_until=sa.bindparam("b_until"), refresh_sent_at=sa.bindparam("b_now"))
    .returning(_c.id)
)
# Copies the current pair into history straight from the row (no round trip through Python).
_PUSH_HISTORY = sa.insert(credential_history).from_select(
    ["credential_id", "version", "access_token_enc", "refresh_token_enc", "expires_at", "replaced_at", "reason"],
    sa.select(
        _c.id,
        _c.version,
        _c.access_token_enc,
        _c.refresh_token_enc,
        _c.expires_at,
        sa.cast(sa.bindparam("b_now"), sa.Integer),
        sa.cast(sa.bindparam("b_reason"), sa.String(32)),
    ).where(_c.id == sa.bindparam("b_id"), _c.version == sa.bindparam("b_version")),
)
_PRUNE_HISTORY = sa.delete(credential_history).where(
    _h.credential_id == sa.bindparam("b_id"), _h.version <= sa.bindparam("b_oldest")
)
_COMMIT_REFRESH = (
    sa.update(credentials)
    .where(_c.id == sa.bindparam("b_id"), _c.version == sa.bindparam("b_version"), _c.status != REVOKED)
    .values(
        access_token_enc=sa.bindparam("b_access"),
        refresh_token_enc=sa.func.coalesce(sa.bindparam("b_refresh", type_=sa.Text), _c.refresh_token_enc),
        expires_at=sa.bindparam("b_expires"),
        refresh_expires_at=sa.func.coalesce(sa.bindparam("b_refresh_expires", type_=sa.Integer), _c.refresh_expires_at),
        version=_c.version + 1,
        status=ACTIVE,
        failure_count=0,
        last_error=None,
        last_error_at=None,
        unconfirmed_attempt=False,
        lease_owner=None,
        lease_until=None,
        refresh_sent_at=None,
        refreshed_at=sa.bindparam("b_now"),
        updated_at=sa.bindparam("b_now"),
    )
)


@dataclass(frozen=True)
class TokenSet:
    """A pair as a provider issued it, with absolute expiry times (unix seconds)."""

    access_token: str
    refresh_token: str | None
    expires_at: int
    refresh_expires_at: int | None = None


@dataclass(frozen=True)
class Credential:
    """A decrypted vault row."""

    id: int
    provider: str
    account: str
    subject: str
    portal_id: int | None
    user_id: int | None
    label: str | None
    endpoint: str | None
    access_token: str
    refresh_token: str | None
    expires_at: int
    refresh_expires_at: int | None
    version: int
    status: str
    failure_count: int
    last_error: str | None
    last_error_at: int | None
    unconfirmed_attempt: bool
    lease_owner: str | None
    lease_until: float | None
    refreshed_at: int | None
    last_used_at: int | None


def _identity(provider: str, account: str, subject: str) -> dict:
    return {"b_provider": provider, "b_account": account, "b_subject": subject}


class Undecryptable(Exception):
    """No configured key decrypts the row's tokens (they were written with a key we no longer hold)."""

    def __init__(self, credential_id: int):
        super().__init__(f"credential {credential_id} cannot be decrypted")
        self.credential_id = credential_id


class _VersionMoved(Exception):
    """Raised inside a write transaction to roll it back when a CAS update matched nothing."""


@dataclass(frozen=True)
class _VersionRef:
    """The (id, version) of a row, enough to push that version to history."""

    id: int
    version: int


class Vault:
    """Encrypted credential storage with leases, compare-and-swap updates and history."""

    def __init__(self, db: Database, cipher: Cipher, history_keep: int = 5):
        self.db = db
        self.cipher = cipher
        self.history_keep = max(1, history_keep)
        # Told (off the storing thread, after commit) when a fresh pair replaced one that needed
        # re-authorisation; the refresh engine counts it and has the portal admin told.
        self.on_restored: Callable[[Credential], None] | None = None

    # ---- reading -------------------------------------------------------------------------

    def open(self, row) -> Credential:
        """Decrypt a credentials row; raises Undecryptable when no configured key fits."""
        try:
            access_token = self.cipher.decrypt(row.access_token_enc)
            refresh_token = self.cipher.decrypt(row.refresh_token_enc)
        except (InvalidToken, ValueError):  # ValueError: not even Fernet's alphabet or UTF-8 inside
            raise Undecryptable(row.id) from None
        return self._credential(row, access_token, refresh_token)

    def _read(self, row, found_broken: list | None = None) -> Credential:
        """Decrypt a row for a reader; an undecryptable one comes back `broken` with no tokens.

        Rows found undecryptable that are not marked yet are appended to `found_broken`, for the caller
        to quarantine once its read transaction is over.
        """
        try:
            return self.open(row)
        except Undecryptable:
            if row.status not in (BROKEN, REVOKED) and found_broken is not None:
                found_broken.append(row)
            status = REVOKED if row.status == REVOKED else BROKEN
            credential = self._credential(row, "", None)
            return dataclasses.replace(
                credential, status=status, last_error=UNDECRYPTABLE if status == BROKEN else row.last_error
            )

    def _quarantine_found(self, rows: list) -> None:
        for row in rows:
            self.quarantine(row.id, row.version)

    def _credential(self, row, access_token: str, refresh_token: str | None) -> Credential:
        return Credential(
            id=row.id,
            provider=row.provider,
            account=row.account,
            subject=row.subject,
            portal_id=row.portal_id,
            user_id=row.user_id,
            label=row.label,
            endpoint=row.endpoint,
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=row.expires_at,
            refresh_expires_at=row.refresh_expires_at,
            version=row.version,
            status=row.status,
            failure_count=row.failure_count,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            unconfirmed_attempt=bool(row.unconfirmed_attempt),
            lease_owner=row.lease_owner,
            lease_until=row.lease_until,
            refreshed_at=row.refreshed_at,
            last_used_at=row.last_used_at,
        )

    def get(self, credential_id: int) -> Credential | None:
        """The credential by id, decrypted."""
        with self.db.read() as conn:
            row = conn.execute(_SELECT_ONE, {"b_id": credential_id}).first()
        return self._read_one(row)

    def _read_one(self, row) -> Credential | None:
        if row is None:
            return None
        broken: list = []
        credential = self._read(row, broken)
        self._quarantine_found(broken)
        return credential

    def find(self, provider: str, account: str, subject: str) -> Credential | None:
        """The credential by its identity (provider, account, subject)."""
        with self.db.read() as conn:
            row = conn.execute(_SELECT_BY_IDENTITY, _identity(provider, account, subject)).first()
        return self._read_one(row)

    def for_portal(self, portal_id: int, provider: str | None = None) -> list[Credential]:
        """All credentials belonging to a portal."""
        query = sa.select(credentials).where(credentials.c.portal_id == portal_id)
        if provider:
            query = query.where(credentials.c.provider == provider)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(credentials.c.id)).all()
        broken: list = []
        found = [self._read(r, broken) for r in rows]
        self._quarantine_found(broken)
        return found

    def list(
        self, provider: str | None = None, status: str | None = None, limit: int = 1000, portal_id: int | None = None
    ) -> list[dict]:
        """Credential metadata without any token, for status listings."""
        cols = [c for c in credentials.c if not c.name.endswith("_enc") and not c.name.startswith("lease_")]
        query = sa.select(*cols).order_by(credentials.c.id).limit(limit)
        if portal_id is not None:
            query = query.where(credentials.c.portal_id == portal_id)
        if provider:
            query = query.where(credentials.c.provider == provider)
        if status:
            query = query.where(credentials.c.status == status)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def expiring_without_refresh(self, within_seconds: int) -> list[dict]:
        """Active credentials with no refresh token whose access token ends soon (or has ended)."""
        query = (
            sa.select(_c.id, _c.provider, _c.account, _c.label, _c.expires_at)
            .where(_c.status == ACTIVE, _c.refresh_token_enc.is_(None), _c.expires_at <= now() + within_seconds)
            .order_by(_c.expires_at)
        )
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts of credentials by provider and status."""
        query = sa.select(credentials.c.provider, credentials.c.status, sa.func.count()).group_by(
            credentials.c.provider, credentials.c.status
        )
        out: dict[str, dict[str, int]] = {}
        with self.db.read() as conn:
            for provider, status, count in conn.execute(query):
                out.setdefault(provider, {})[status] = count
        return out

    def history(self, credential_id: int) -> list[dict]:
        """Stored previous versions (newest first), tokens decrypted — for operators and tests."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(credential_history)
                .where(credential_history.c.credential_id == credential_id)
                .order_by(credential_history.c.version.desc())
            ).all()
        return [
            {
                "version": r.version,
                "access_token": self._decrypt_or_none(r.access_token_enc),
                "refresh_token": self._decrypt_or_none(r.refresh_token_enc),
                "expires_at": r.expires_at,
                "replaced_at": r.replaced_at,
                "reason": r.reason,
            }
            for r in rows
        ]

    def _decrypt_or_none(self, value: str | None) -> str | None:
        try:
            return self.cipher.decrypt(value)
        except (InvalidToken, ValueError):
            return None

    # ---- writing new pairs -----------------------------------------------------------------

    def store(
        self,
        provider: str,
        account: str,
        subject: str,
        tokens: TokenSet,
        *,
        portal_id: int | None = None,
        user_id: int | None = None,
        label: str | None = None,
        endpoint: str | None = None,
        reason: str = "grant",
        used: bool = True,
        conn=None,
    ) -> int:
        """Insert or replace a credential with a freshly granted pair; returns its id.

        Used for pairs that arrive from outside the refresh path (install, iframe open, OAuth
        connect): they are newer than whatever we hold, so they win and reset the failure state.
        `used=False` keeps the pair out of the cron's "in use" set until a call actually uses it
        (request-time refresh covers it then), so idle users' tokens are not refreshed on a timer.
        """
        if conn is None:
            with self.db.write() as c:
                return self.store(
                    provider,
                    account,
                    subject,
                    tokens,
                    portal_id=portal_id,
                    user_id=user_id,
                    label=label,
                    endpoint=endpoint,
                    reason=reason,
                    used=used,
                    conn=c,
                )
        ts = now()
        row = conn.execute(_LOCK_BY_IDENTITY, _identity(provider, account, subject)).first()
        values = {
            "access_token_enc": self.cipher.encrypt(tokens.access_token),
            "refresh_token_enc": self.cipher.encrypt(tokens.refresh_token),
            "expires_at": int(tokens.expires_at),
            "refresh_expires_at": tokens.refresh_expires_at,
            "status": ACTIVE,
            "failure_count": 0,
            "last_error": None,
            "last_error_at": None,
            "unconfirmed_attempt": False,
            "refresh_sent_at": None,
            "refreshed_at": ts,
            "updated_at": ts,
        }
        for key, value in (("portal_id", portal_id), ("user_id", user_id), ("label", label), ("endpoint", endpoint)):
            if value is not None:
                values[key] = value
        if used:
            values["last_used_at"] = ts
        if row is None:
            try:
                with conn.begin_nested():  # a concurrent first insert of the same identity may win
                    return conn.execute(
                        sa.insert(credentials).values(
                            provider=provider, account=account, subject=subject, version=1, created_at=ts, **values
                        )
                    ).inserted_primary_key[0]
            except sa.exc.IntegrityError:
                row = conn.execute(_LOCK_BY_IDENTITY, _identity(provider, account, subject)).first()
                if row is None:
                    raise
        self._push_history(conn, row, reason)
        values["version"] = row.version + 1
        conn.execute(sa.update(credentials).where(credentials.c.id == row.id).values(**values))
        if row.status == NEEDS_REAUTH:
            self._announce_restored(conn, row.id)
        return row.id

    def _announce_restored(self, conn, credential_id: int) -> None:
        """Tell on_restored about the credential once the writing transaction has committed.

        A caller may still hold its transaction (install and update store inside theirs), and telling the
        admin is network I/O that must not run inside one: the call waits for the commit (and never
        happens after a rollback).
        """
        if self.on_restored is not None:
            after_commit(conn, lambda: self._restored(credential_id))

    def _restored(self, credential_id: int) -> None:
        cred = self.get(credential_id)
        if cred is None or cred.status != ACTIVE or self.on_restored is None:
            return  # deleted or failed again meanwhile
        try:
            self.on_restored(cred)
        except Exception:  # the credential works again whatever the notification does
            log.exception("could not announce that credential %s works again", credential_id)

    def _push_history(self, conn, row, reason: str) -> None:
        """Copy the row's current pair into history and drop versions beyond the ones kept."""
        conn.execute(_PUSH_HISTORY, {"b_id": row.id, "b_version": row.version, "b_now": now(), "b_reason": reason})
        conn.execute(_PRUNE_HISTORY, {"b_id": row.id, "b_oldest": row.version - self.history_keep})

    def commit_refresh(self, credential_id: int, expected_version: int, tokens: TokenSet) -> bool:
        """Store a refreshed pair only if nobody changed the row since we read it (CAS on version).

        Commits before the caller may use the new access token. Releases the lease and clears the
        failure state. Returns False when the version moved (a peer stored a newer pair).
        """
        params = {
            "b_id": credential_id,
            "b_version": expected_version,
            "b_access": self.cipher.encrypt(tokens.access_token),
            "b_refresh": self.cipher.encrypt(tokens.refresh_token),
            "b_expires": int(tokens.expires_at),
            "b_refresh_expires": tokens.refresh_expires_at,
            "b_now": now(),
        }
        try:
            with self.db.write() as conn:
                # History first (it needs the old pair), then the CAS update; if the version moved,
                # the update matches no row and the exception rolls the history row back too.
                self._push_history(conn, _VersionRef(credential_id, expected_version), "refresh")
                if conn.execute(_COMMIT_REFRESH, params).rowcount != 1:
                    raise _VersionMoved
        except _VersionMoved:
            return False
        return True

    # ---- leases ------------------------------------------------------------------------------

    def claim_lease(self, credential_id: int, owner: str, ttl_seconds: float) -> bool:
        """Try to take the refresh lease: a conditional UPDATE that only one process can win."""
        return self.claim(credential_id, owner, ttl_seconds) is not None

    def claim(self, credential_id: int, owner: str, ttl_seconds: float) -> Credential | None:
        """Take the lease and read the row in the same statement (UPDATE … RETURNING); None if taken.

        An undecryptable row is quarantined at once (lease released) and returned with status `broken`.
        """
        t = time.time()
        with self.db.write() as conn:
            row = conn.execute(
                _CLAIM_ONE, {"b_id": credential_id, "b_now": t, "b_owner": owner, "b_until": t + ttl_seconds}
            ).first()
        if row is None:
            return None
        credential = self._read(row)
        if credential.status == BROKEN:
            self.quarantine(row.id, row.version, owner)
        return credential

    def claim_many(self, credential_ids: list[int], owner: str, ttl_seconds: float) -> list:
        """Take the leases of several credentials in one statement; returns the rows won, still encrypted.

        Each worker decrypts its own row (`open`): a row no key fits is then that row's problem only.
        """
        if not credential_ids:
            return []
        t = time.time()
        with self.db.write() as conn:
            return conn.execute(
                _CLAIM_MANY, {"b_ids": list(credential_ids), "b_now": t, "b_owner": owner, "b_until": t + ttl_seconds}
            ).all()

    def start_attempt(self, credential_id: int, owner: str, ttl_seconds: float) -> float | None:
        """Record that a refresh request is about to go out, renewing our lease; None when it is not ours."""
        return self.start_attempts([(credential_id, owner)], ttl_seconds)[0]

    def start_attempts(self, items: list[tuple[int, str]], ttl_seconds: float) -> list[float | None]:
        """start_attempt for several leases in one transaction (the run's group commit); one result each."""
        t = time.time()
        until = t + ttl_seconds
        by_owner: dict[str, list[int]] = {}
        for credential_id, owner in items:
            by_owner.setdefault(owner, []).append(credential_id)
        started: set[tuple[int, str]] = set()
        with self.db.write() as conn:
            # A run's workers share one owner: usually one statement for the whole batch.
            for owner, ids in by_owner.items():
                result = conn.execute(_START_ATTEMPTS, {"b_ids": ids, "b_owner": owner, "b_until": until, "b_now": t})
                started.update((row.id, owner) for row in result)
        return [until if item in started else None for item in items]

    def quarantine(self, credential_id: int, version: int, owner: str | None = None) -> bool:
        """Mark an undecryptable row `broken` (and give back `owner`'s lease); False if the row moved on.

        Compare-and-swap on the version: a pair stored meanwhile with the current key is healthy and
        must not be marked. Revoked rows stay revoked.
        """
        values = {"status": BROKEN, "last_error": UNDECRYPTABLE, "last_error_at": now(), "updated_at": now()}
        if owner is not None:
            mine = _c.lease_owner == owner
            values.update(
                lease_owner=sa.case((mine, None), else_=_c.lease_owner),
                lease_until=sa.case((mine, None), else_=_c.lease_until),
                refresh_sent_at=sa.case((mine, None), else_=_c.refresh_sent_at),
            )
        with self.db.write() as conn:
            result = conn.execute(
                sa.update(credentials)
                .where(_c.id == credential_id, _c.version == version, _c.status != REVOKED)
                .values(**values)
            )
        if result.rowcount == 1:
            log.error("credential %s cannot be decrypted with any configured key: quarantined as broken", credential_id)
        return result.rowcount == 1

    def commit_many(self, items: list[tuple[int, int, TokenSet]]) -> list[bool]:
        """commit_refresh for a batch in one transaction (group commit); one result per item.

        Rows whose version moved are left alone (False). The batch is one short transaction, so
        refreshed pairs are durable before their workers report success.
        """
        if not items:
            return []
        ids = [cid for cid, _, _ in items]
        ts = now()
        with self.db.write() as conn:
            # Rows are locked in id order so two committers can never deadlock on PostgreSQL; revoked
            # credentials (uninstalled portals) are not revived by a refresh that was in flight.
            current = dict(
                conn.execute(
                    sa.select(_c.id, _c.version)
                    .where(_c.id.in_(ids), _c.status != REVOKED)
                    .order_by(_c.id)
                    .with_for_update()
                ).all()
            )
            ok = [current.get(cid) == version for cid, version, _ in items]
            todo = [item for item, good in zip(items, ok, strict=True) if good]
            if todo:
                conn.execute(
                    _PUSH_HISTORY,
                    [{"b_id": cid, "b_version": v, "b_now": ts, "b_reason": "refresh"} for cid, v, _ in todo],
                )
                conn.execute(
                    _COMMIT_REFRESH,
                    [
                        {
                            "b_id": cid,
                            "b_version": v,
                            "b_access": self.cipher.encrypt(t.access_token),
                            "b_refresh": self.cipher.encrypt(t.refresh_token),
                            "b_expires": int(t.expires_at),
                            "b_refresh_expires": t.refresh_expires_at,
                            "b_now": ts,
                        }
                        for cid, v, t in todo
                    ],
                )
                conn.execute(_PRUNE_HISTORY, [{"b_id": cid, "b_oldest": v - self.history_keep} for cid, v, _ in todo])
        return ok

    def release_lease(self, credential_id: int, owner: str) -> None:
        """Give the lease back (only if we still hold it)."""
        with self.db.write() as conn:
            conn.execute(_RELEASE_LEASE, {"b_id": credential_id, "b_owner": owner})

    def lease_holder(self, credential_id: int) -> tuple[str | None, float | None]:
        """Who holds the lease and until when."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(credentials.c.lease_owner, credentials.c.lease_until).where(credentials.c.id == credential_id)
            ).first()
        return (row.lease_owner, row.lease_until) if row else (None, None)

    # ---- failures -------------------------------------------------------------------------------

    def record_failure(
        self,
        credential_id: int,
        owner: str,
        expected_version: int,
        error: str,
        *,
        permanent: bool,
        unconfirmed: bool,
        threshold: int,
        force_reauth: bool = False,
    ) -> str | None:
        """Record a failed refresh and release the lease; returns the new status.

        Permanent failures count towards `threshold`, after which the credential needs
        re-authorisation. Transient failures keep the pair and the status. Nothing is written when a
        peer stored a newer pair meanwhile (returns None).
        """
        ts = now()
        with self.db.write() as conn:
            row = conn.execute(sa.select(credentials).where(credentials.c.id == credential_id)).first()
            if row is None or row.version != expected_version:
                conn.execute(_RELEASE_LEASE, {"b_id": credential_id, "b_owner": owner})
                return None
            failures = row.failure_count + (1 if permanent else 0)
            status = row.status
            if force_reauth or (permanent and failures >= threshold):
                status = NEEDS_REAUTH
            if row.lease_owner not in (owner, None):
                # Our lease expired and another refresher holds the row now: its result counts, not ours.
                return None
            conn.execute(
                sa.update(credentials)
                .where(credentials.c.id == credential_id, credentials.c.version == expected_version)
                .values(
                    failure_count=failures,
                    status=status,
                    last_error=error[:64],
                    last_error_at=ts,
                    unconfirmed_attempt=bool(unconfirmed),
                    lease_owner=None,
                    lease_until=None,
                    refresh_sent_at=None,
                    updated_at=ts,
                )
            )
        return status

    def mark_unconfirmed(self, credential_id: int, version: int) -> None:
        """Remember that the provider may have rotated this version's pair (its answer was not stored)."""
        with self.db.write() as conn:
            conn.execute(
                sa.update(credentials)
                .where(credentials.c.id == credential_id, credentials.c.version == version)
                .values(unconfirmed_attempt=True)
            )

    def mark_used(self, credential_id: int, last_used_at: int | None) -> None:
        """Note that the access token was used (throttled to one write a minute per credential)."""
        ts = now()
        if last_used_at is not None and ts - last_used_at < 60:
            return
        with self.db.write() as conn:
            conn.execute(sa.update(credentials).where(credentials.c.id == credential_id).values(last_used_at=ts))

    def delete(self, credential_id: int) -> bool:
        """Remove a credential and its history."""
        with self.db.write() as conn:
            conn.execute(sa.delete(credential_history).where(credential_history.c.credential_id == credential_id))
            return conn.execute(sa.delete(credentials).where(credentials.c.id == credential_id)).rowcount == 1

    def revoke_portal(self, portal_id: int, delete: bool, conn) -> None:
        """On uninstall: the portal's tokens are dead; drop them (CLEAN) or keep them marked revoked."""
        ids = [r.id for r in conn.execute(sa.select(credentials.c.id).where(credentials.c.portal_id == portal_id))]
        if not ids:
            return
        if delete:
            conn.execute(sa.delete(credential_history).where(credential_history.c.credential_id.in_(ids)))
            conn.execute(sa.delete(credentials).where(credentials.c.id.in_(ids)))
        else:
            conn.execute(
                sa.update(credentials)
                .where(credentials.c.id.in_(ids), credentials.c.provider == "bitrix24")
                .values(
                    status=REVOKED,
                    last_error="app_uninstalled",
                    lease_owner=None,
                    lease_until=None,
                    refresh_sent_at=None,
                    updated_at=now(),
                )
            )

    # ---- due selection -----------------------------------------------------------------------

    def due_page(
        self,
        *,
        now_ts: int,
        ahead_seconds: int,
        recent_use_seconds: int,
        renew_before_seconds: int,
        provider: str | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[tuple[int, int]]:
        """One page of (expires_at, id) of credentials due for refresh, most urgent first.

        Due = active, has a refresh token, and either the access token expires within
        `ahead_seconds` and was used within `recent_use_seconds`, or the refresh token itself
        nears its end of life. Keyset paging on (expires_at, id) streams through any number.
        """
        c = credentials.c
        condition = sa.and_(
            c.status == ACTIVE,
            c.refresh_token_enc.is_not(None),
            sa.or_(
                sa.and_(c.expires_at <= now_ts + ahead_seconds, c.last_used_at >= now_ts - recent_use_seconds),
                c.refresh_expires_at <= now_ts + renew_before_seconds,
            ),
        )
        if provider:
            condition = sa.and_(condition, c.provider == provider)
        if after is not None:
            condition = sa.and_(
                condition, sa.or_(c.expires_at > after[0], sa.and_(c.expires_at == after[0], c.id > after[1]))
            )
        query = sa.select(c.expires_at, c.id).where(condition).order_by(c.expires_at, c.id).limit(limit)
        with self.db.read() as conn:
            return [(r.expires_at, r.id) for r in conn.execute(query)]

    def count_due(self, **kwargs) -> int:
        """How many credentials are due right now (same rule as due_page)."""
        total = 0
        after = None
        while True:
            page = self.due_page(after=after, limit=5000, **kwargs)
            total += len(page)
            if len(page) < 5000:
                return total
            after = page[-1]

    # ---- key rotation ------------------------------------------------------------------------

    def rotate_key(self, batch: int = 500) -> int:
        """Re-encrypt every stored token with the newest key; returns how many rows changed.

        Rows no configured key decrypts are left as they are (credentials among them quarantined);
        `broken` rows that decrypt again (their key was put back) are re-encrypted and active again.
        """
        changed = 0
        for table in (credentials, credential_history):
            is_credentials = table is credentials
            extra = [table.c.status, table.c.last_error] if is_credentials else []
            last_id = 0
            while True:
                with self.db.write() as conn:
                    rows = conn.execute(
                        sa.select(table.c.id, table.c.access_token_enc, table.c.refresh_token_enc, *extra)
                        .where(table.c.id > last_id)
                        .order_by(table.c.id)
                        .limit(batch)
                        # Locked (PostgreSQL) so a refresh committed meanwhile is not overwritten with
                        # the re-encrypted old pair; SQLite already serialises the whole write.
                        .with_for_update()
                    ).all()
                    for r in rows:
                        try:
                            values = {
                                "access_token_enc": self.cipher.rotate(r.access_token_enc),
                                "refresh_token_enc": self.cipher.rotate(r.refresh_token_enc),
                            }
                        except (InvalidToken, ValueError):
                            if is_credentials and r.status not in (BROKEN, REVOKED):
                                conn.execute(
                                    sa.update(table)
                                    .where(table.c.id == r.id)
                                    .values(
                                        status=BROKEN,
                                        last_error=UNDECRYPTABLE,
                                        last_error_at=now(),
                                        updated_at=now(),
                                        lease_owner=None,
                                        lease_until=None,
                                        refresh_sent_at=None,
                                    )
                                )
                                log.error(
                                    "credential %s cannot be decrypted with any configured key: quarantined as broken",
                                    r.id,
                                )
                            continue
                        if is_credentials and r.status == BROKEN and r.last_error == UNDECRYPTABLE:
                            values.update(status=ACTIVE, last_error=None, updated_at=now())
                            log.info("credential %s decrypts again: active", r.id)
                        conn.execute(sa.update(table).where(table.c.id == r.id).values(**values))
                        changed += 1
                if len(rows) < batch:
                    break
                last_id = rows[-1].id
        return changed

    def iter_ids(self, provider: str | None = None) -> Iterator[int]:
        """Every credential id (for CLI listings)."""
        query = sa.select(credentials.c.id).order_by(credentials.c.id)
        if provider:
            query = query.where(credentials.c.provider == provider)
        with self.db.read() as conn:
            ids = [r.id for r in conn.execute(query)]
        yield from ids
