"""OAuth grants of every fake provider: minting, rotation, revocation, one-time codes and counters.

A *grant* is one chain of token pairs that starts at a mint or a code exchange; each refresh rotates
the pair inside the same grant. Refresh tokens are single-use: a spent one is remembered so a reuse
can be told apart from a token that never existed (the reuse counters are what the tests assert on).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = ("bitrix24", "yandex", "amocrm")
_GRANT_PREFIX = {"bitrix24": "b24", "yandex": "ya", "amocrm": "amo"}


@dataclass
class Grant:
    grant_id: str
    provider: str
    client_id: str
    subject: dict[str, Any]  # provider specific: portal/user_id | uid | subdomain
    scope: str
    access_token: str
    refresh_token: str
    access_expires: float
    refresh_expires: float
    created: float = field(default_factory=time.time)
    rotations: int = 0
    revoked: bool = False

    def public(self) -> dict[str, Any]:
        """Describe the newest pair of this chain for the control API."""
        return {
            "grant_id": self.grant_id,
            "provider": self.provider,
            "client_id": self.client_id,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "access_expires": int(self.access_expires),
            "refresh_expires": int(self.refresh_expires),
            "rotations": self.rotations,
            "revoked": self.revoked,
            **self.subject,
        }


@dataclass
class _Refresh:
    grant_id: str
    expires_at: float
    state: str = "active"  # active | spent | revoked


@dataclass
class Code:
    provider: str
    client_id: str
    subject: dict[str, Any]
    scope: str
    expires_at: float
    extra: dict[str, Any] = field(default_factory=dict)
    used: bool = False


@dataclass
class RefreshResult:
    grant: Grant | None = None
    error: str | None = None  # unknown | wrong_client | revoked | spent | expired | precheck
    detail: Any = None  # whatever the precheck returned


def _new_counters() -> dict[str, Any]:
    return {
        "total": 0,
        "by_grant": Counter(),
        "reuse_attempts": 0,
        "reuse_by_grant": Counter(),
        "spent_tokens": 0,
        # Times each refresh token was presented (spend + reuse attempts), keyed by a fingerprint so
        # the control API never shows a live token: 1 everywhere means nothing was spent twice.
        "by_token": Counter(),
    }


def token_fingerprint(token: str) -> str:
    """A short, stable, non-reversible name for a token in counters."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_pair(provider: str, subject: dict[str, Any], expires_at: float) -> tuple[str, str]:
    """Generate a provider-looking access/refresh token pair."""
    if provider == "yandex":
        return "y0_" + secrets.token_hex(24), "1:" + secrets.token_hex(8) + ":" + secrets.token_hex(24)
    if provider == "amocrm":
        # amoCRM access tokens are JWTs and refresh tokens start with def50200; mimic both shapes.
        header = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9"
        claims = {
            "jti": secrets.token_hex(8),
            "iat": int(time.time()),
            "exp": int(expires_at),
            "account": subject.get("subdomain"),
        }
        return f"{header}.{_b64(claims)}.{secrets.token_hex(24)}", "def50200" + secrets.token_hex(48)
    return secrets.token_hex(16), secrets.token_hex(16)


class TokenStore:
    """All grants, access/refresh tokens and codes; every public method takes the shared lock."""

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self.grants: dict[str, Grant] = {}
        self._access: dict[str, str] = {}  # access token -> grant_id
        self._access_expiry: dict[str, float] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._codes: dict[tuple[str, str], Code] = {}
        self.counters: dict[str, dict[str, Any]] = {p: _new_counters() for p in PROVIDERS}

    # --- minting -------------------------------------------------------------------------------
    def mint(
        self,
        provider: str,
        client_id: str,
        subject: dict[str, Any],
        scope: str,
        access_ttl: float,
        refresh_ttl: float,
    ) -> Grant:
        """Start a new grant with a fresh pair."""
        now = time.time()
        access_expires = now + access_ttl
        access, refresh = new_pair(provider, subject, access_expires)
        grant = Grant(
            grant_id=f"{_GRANT_PREFIX[provider]}-{secrets.token_hex(8)}",
            provider=provider,
            client_id=client_id,
            subject=dict(subject),
            scope=scope,
            access_token=access,
            refresh_token=refresh,
            access_expires=access_expires,
            refresh_expires=now + refresh_ttl,
            created=now,
        )
        with self.lock:
            self.grants[grant.grant_id] = grant
            self._access[access] = grant.grant_id
            self._access_expiry[access] = access_expires
            self._refresh[refresh] = _Refresh(grant.grant_id, grant.refresh_expires)
        return grant

    # --- lookups -------------------------------------------------------------------------------
    def lookup_access(self, provider: str, token: str | None) -> tuple[Grant | None, str]:
        """Resolve an access token to its grant: status is ok, expired or unknown."""
        if not token:
            return None, "unknown"
        with self.lock:
            grant_id = self._access.get(token)
            grant = self.grants.get(grant_id) if grant_id else None
            if grant is None or grant.provider != provider or grant.revoked:
                return None, "unknown"
            if self._access_expiry.get(token, 0) <= time.time():
                return grant, "expired"
            return grant, "ok"

    def access_expires(self, token: str) -> float:
        """Expiry time of one access token (old tokens may outlive a rotation)."""
        with self.lock:
            return self._access_expiry.get(token, 0.0)

    def get(self, grant_id: str) -> Grant | None:
        """Grant by id."""
        with self.lock:
            return self.grants.get(grant_id)

    # --- rotation ------------------------------------------------------------------------------
    def refresh(
        self,
        provider: str,
        token: str,
        client_id: str,
        *,
        access_ttl: float,
        refresh_ttl: float | None,
        keep_old_access: bool,
        precheck: Callable[[Grant], Any] | None = None,
    ) -> RefreshResult:
        """Spend a refresh token and rotate its grant, atomically (check order mirrors the fakes' errors)."""
        with self.lock:
            record = self._refresh.get(token)
            grant = self.grants.get(record.grant_id) if record else None
            if record is None or grant is None or grant.provider != provider:
                return RefreshResult(error="unknown")
            if grant.client_id != client_id:
                return RefreshResult(grant=grant, error="wrong_client")
            if precheck is not None:
                problem = precheck(grant)
                if problem is not None:
                    return RefreshResult(grant=grant, error="precheck", detail=problem)
            if grant.revoked or record.state == "revoked":
                return RefreshResult(grant=grant, error="revoked")
            counters = self.counters[provider]
            if record.state == "spent":
                counters["by_token"][token_fingerprint(token)] += 1
                counters["reuse_attempts"] += 1
                counters["reuse_by_grant"][grant.grant_id] += 1
                return RefreshResult(grant=grant, error="spent")
            now = time.time()
            if record.expires_at <= now:
                return RefreshResult(grant=grant, error="expired")
            record.state = "spent"
            counters["spent_tokens"] += 1
            counters["by_token"][token_fingerprint(token)] += 1
            if not keep_old_access:
                self._access.pop(grant.access_token, None)
                self._access_expiry.pop(grant.access_token, None)
            access_expires = now + access_ttl
            access, refresh = new_pair(provider, grant.subject, access_expires)
            grant.access_token, grant.refresh_token = access, refresh
            grant.access_expires = access_expires
            # Yandex renews the refresh lifetime with the access one; the others keep a fixed window.
            grant.refresh_expires = now + refresh_ttl if refresh_ttl is not None else grant.refresh_expires
            grant.rotations += 1
            self._access[access] = grant.grant_id
            self._access_expiry[access] = access_expires
            self._refresh[refresh] = _Refresh(grant.grant_id, grant.refresh_expires)
            counters["total"] += 1
            counters["by_grant"][grant.grant_id] += 1
            return RefreshResult(grant=grant)

    # --- revocation ----------------------------------------------------------------------------
    def revoke(self, grant_id: str) -> Grant | None:
        """Revoke a whole chain: its current access and refresh tokens stop working."""
        with self.lock:
            grant = self.grants.get(grant_id)
            if grant is None:
                return None
            grant.revoked = True
            self._access.pop(grant.access_token, None)
            self._access_expiry.pop(grant.access_token, None)
            record = self._refresh.get(grant.refresh_token)
            if record is not None and record.state == "active":
                record.state = "revoked"
            return grant

    def revoke_where(self, predicate: Callable[[Grant], bool]) -> int:
        """Revoke every live grant the predicate selects; returns how many."""
        with self.lock:
            chosen = [g.grant_id for g in self.grants.values() if not g.revoked and predicate(g)]
            # Old access tokens kept alive after a rotation die too: lookups check grant.revoked.
            for grant_id in chosen:
                self.revoke(grant_id)
            return len(chosen)

    # --- one-time codes ------------------------------------------------------------------------
    def issue_code(self, record: Code, make_code: Callable[[], str]) -> str:
        """Remember a one-time authorization code (make_code is retried until the code is unused)."""
        with self.lock:
            code = make_code()
            while (record.provider, code) in self._codes:
                code = make_code()
            self._codes[(record.provider, code)] = record
        return code

    def redeem_code(
        self, provider: str, code: str, accept: Callable[[Code], bool] | None = None
    ) -> tuple[Code | None, str | None]:
        """Use a code once: error is unknown, used, expired or mismatch (accept() refused; not consumed)."""
        with self.lock:
            record = self._codes.get((provider, code))
            if record is None:
                return None, "unknown"
            if record.used:
                return record, "used"
            if record.expires_at <= time.time():
                return record, "expired"
            if accept is not None and not accept(record):
                return record, "mismatch"
            record.used = True
            return record, None

    # --- counters ------------------------------------------------------------------------------
    def refresh_counters(self) -> dict[str, dict[str, Any]]:
        """Snapshot of the refresh counters per provider (plain dicts, JSON ready)."""
        with self.lock:
            return {
                provider: {
                    "total": c["total"],
                    "by_grant": dict(c["by_grant"]),
                    "reuse_attempts": c["reuse_attempts"],
                    "reuse_by_grant": dict(c["reuse_by_grant"]),
                    "spent_tokens": c["spent_tokens"],
                    "by_token": dict(c["by_token"]),
                }
                for provider, c in self.counters.items()
            }

    def reset_counters(self) -> None:
        """Zero the refresh counters (tokens and grants are kept)."""
        with self.lock:
            self.counters = {p: _new_counters() for p in PROVIDERS}
