"""Secrets handling: hashing of shared tokens, constant-time checks, signed session tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

SESSION_AUDIENCE = "b24-telemost-ui"
SESSION_ISSUER = "b24-telemost"
VERIFIED_CACHE_SIZE = 4096


def token_hash(value: str) -> str:
    """SHA-256 hex of a shared secret, so the database never holds it in clear."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def matches_hash(value: str | None, stored_hash: str | None) -> bool:
    """Constant-time check of a presented secret against its stored hash."""
    if not value or not stored_hash:
        return False
    return hmac.compare_digest(token_hash(value), stored_hash)


def same_secret(presented: str | None, expected: str | None) -> bool:
    """Constant-time equality of two secrets; empty never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret."""
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class Identity:
    """A verified Bitrix24 user of an installed portal, as carried by the session token."""

    member_id: str
    user_id: int
    portal_id: int
    domain: str
    name: str
    is_admin: bool

    @property
    def subject(self) -> str:
        """The JWT `sub`: member_id:user_id."""
        return f"{self.member_id}:{self.user_id}"


class InvalidSession(Exception):
    """The bearer token is missing, expired, forged or for another audience."""


class SessionSigner:
    """Issues and checks the short-lived HS256 bearer tokens of the iframe UI."""

    def __init__(self, key: str, ttl_seconds: int, issuer: str = SESSION_ISSUER):
        if not key:
            raise ValueError("SESSION_SIGNING_KEY is empty")
        self._key = key
        self.ttl = ttl_seconds
        self.issuer = issuer
        # Tokens already verified, with their expiry: the UI sends the same token with every call for up
        # to `ttl` seconds, and decoding it again each time is a large share of a cheap request. Same string,
        # same signature: a hit needs only the expiry check.
        self._verified: dict[str, tuple[int, Identity]] = {}

    def issue(self, identity: Identity, now: float | None = None) -> tuple[str, int]:
        """Return (token, expires_at) for a verified identity."""
        issued = int(now if now is not None else time.time())
        exp = issued + self.ttl
        claims = {
            "sub": identity.subject,
            "aud": SESSION_AUDIENCE,
            "iss": self.issuer,
            "iat": issued,
            "exp": exp,
            "pid": identity.portal_id,
            "dom": identity.domain,
            "name": identity.name,
            "adm": identity.is_admin,
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), exp

    def verify(self, token: str) -> Identity:
        """Return the identity of a valid token or raise InvalidSession."""
        hit = self._verified.get(token)
        if hit is not None and time.time() < hit[0]:
            return hit[1]
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=SESSION_AUDIENCE,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
            member_id, user_id = claims["sub"].rsplit(":", 1)
            identity = Identity(
                member_id=member_id,
                user_id=int(user_id),
                portal_id=int(claims["pid"]),
                domain=str(claims["dom"]),
                name=str(claims.get("name", "")),
                is_admin=bool(claims.get("adm")),
            )
            expires_at = int(claims["exp"])
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise InvalidSession(str(exc)) from exc
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # live sessions come back on their next call: cheaper than LRU bookkeeping
        self._verified[token] = (expires_at, identity)
        return identity
