"""Connect links for outside accounts (Yandex, amoCRM): single-use, short-lived, bound to one browser.

A link is a bearer: whoever opens it could attach *their* account to the portal that made it. So it
works once and briefly, the browser that opens it is shown which portal and user it connects to, and
only that browser (a nonce cookie) can press "Connect" and finish the callback. Every step is a
conditional UPDATE on one row, so exactly one request wins it, whichever worker it reaches:

    issued ──open──▶ opened ──confirm──▶ sent ──finish──▶ done

Only hashes of the ticket, the OAuth state and the nonce are stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from database import Database, connect_links, now
from models.errors import ServiceError
from models.security import new_secret, token_hash

LINK_TTL_SECONDS = 120  # issue → open: the link itself
CONFIRM_TTL_SECONDS = 600  # open → "Connect": the user reads the confirmation page
CONSENT_TTL_SECONDS = 900  # "Connect" → callback: logging in and consenting at the provider
PURGE_AFTER_SECONDS = 86400

ISSUED, OPENED, SENT, DONE = "issued", "opened", "sent", "done"
SCOPES = ("portal", "personal", "global")
_c = connect_links.c


class ConnectRefused(ServiceError):
    """A connect link, confirmation or callback that cannot be honoured (used, expired, unknown, other browser)."""


@dataclass(frozen=True)
class ConnectLink:
    """Who a connect link is for: the provider, the scope, the portal and the Bitrix24 user."""

    id: int
    provider: str
    scope: str
    portal_id: int | None
    user_id: int | None
    user_name: str | None
    lang: str | None


def _link(row) -> ConnectLink:
    return ConnectLink(row.id, row.provider, row.scope, row.portal_id, row.user_id, row.user_name, row.lang)


class ConnectLinks:
    """The database-backed life of connect links."""

    def __init__(self, db: Database, link_ttl: int = LINK_TTL_SECONDS):
        self.db = db
        self.link_ttl = link_ttl

    def issue(
        self,
        provider: str,
        scope: str,
        *,
        portal_id: int | None = None,
        user_id: int | None = None,
        user_name: str | None = None,
        lang: str | None = None,
    ) -> str:
        """A new single-use ticket for the start URL (valid LINK_TTL_SECONDS)."""
        if scope not in SCOPES:
            raise ConnectRefused("bad_scope", status=400)
        ticket = new_secret(32)
        ts = now()
        with self.db.write() as conn:
            # Finished and abandoned links are worthless after a day; keeping the table small is enough.
            conn.execute(sa.delete(connect_links).where(_c.expires_at < ts - PURGE_AFTER_SECONDS))
            conn.execute(
                sa.insert(connect_links).values(
                    provider=provider,
                    scope=scope,
                    portal_id=portal_id,
                    user_id=user_id,
                    user_name=(user_name or "")[:120] or None,
                    lang=(lang or "")[:8] or None,
                    ticket_hash=token_hash(ticket),
                    stage=ISSUED,
                    created_at=ts,
                    expires_at=ts + self.link_ttl,
                )
            )
        return ticket

    def describe(self, ticket: str, provider: str) -> ConnectLink | None:
        """The link a ticket names, whatever its stage (for the language of a refusal page)."""
        row = self._row(_c.ticket_hash, ticket, provider)
        return _link(row) if row else None

    def open(self, ticket: str, nonce: str, provider: str) -> ConnectLink:
        """Spend the ticket: the first browser to open it gets the confirmation page, bound to `nonce`."""
        return self._advance(
            _c.ticket_hash,
            ticket,
            provider,
            ISSUED,
            OPENED,
            CONFIRM_TTL_SECONDS,
            nonce_hash=token_hash(nonce),
            bind=True,
        )

    def confirm(self, ticket: str, nonce: str | None, provider: str) -> tuple[ConnectLink, str]:
        """The user pressed "Connect" in the browser that opened the link: a fresh OAuth state for the provider."""
        state = new_secret(32)
        link = self._advance(
            _c.ticket_hash,
            ticket,
            provider,
            OPENED,
            SENT,
            CONSENT_TTL_SECONDS,
            nonce_hash=token_hash(nonce) if nonce else None,
            state_hash=token_hash(state),
        )
        return link, state

    def finish(self, state: str, nonce: str | None, provider: str) -> ConnectLink:
        """The provider's callback came back to the same browser: the link is done (once)."""
        return self._advance(
            _c.state_hash, state, provider, SENT, DONE, 0, nonce_hash=token_hash(nonce) if nonce else None
        )

    def _row(self, column, secret: str, provider: str):
        if not secret or len(secret) > 256:
            return None
        with self.db.read() as conn:
            return conn.execute(
                sa.select(connect_links).where(column == token_hash(secret), _c.provider == provider)
            ).first()

    def _advance(
        self,
        column,
        secret: str,
        provider: str,
        before: str,
        after: str,
        ttl: int,
        *,
        nonce_hash: str | None,
        bind: bool = False,
        state_hash: str | None = None,
    ) -> ConnectLink:
        if not secret or len(secret) > 256:
            raise ConnectRefused("link_unknown", status=400)
        ts = now()
        where = [column == token_hash(secret), _c.provider == provider, _c.stage == before, _c.expires_at > ts]
        if not bind:
            # No cookie never matches: a NULL hash compares unequal to everything.
            where.append(_c.nonce_hash == (nonce_hash or ""))
        values = {"stage": after, "expires_at": ts + ttl if ttl else ts}
        if bind:
            values["nonce_hash"] = nonce_hash
        if state_hash:
            values["state_hash"] = state_hash
        if after == DONE:
            values["finished_at"] = ts
        with self.db.write() as conn:
            changed = conn.execute(sa.update(connect_links).where(*where).values(**values)).rowcount
            row = conn.execute(
                sa.select(connect_links).where(column == token_hash(secret), _c.provider == provider)
            ).first()
        if changed == 1:
            return _link(row)
        if row is None:
            raise ConnectRefused("link_unknown", status=400)
        if row.stage != before:
            raise ConnectRefused("link_used", status=400)
        if row.expires_at <= ts:
            raise ConnectRefused("link_expired", status=400)
        raise ConnectRefused("other_browser", status=400)
