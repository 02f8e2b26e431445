"""Installed portals: lookups, per-portal settings and per-portal API tokens.

Install, set-up, update and uninstall live in `models/install.py`; iframe and session verification in
`models/identity.py`. Both build on the lookups here.

Every API request checks that its session's portal is still installed (`session_portal`). That answer
comes from a per-process cache of installed portals kept for `PORTAL_CACHE_SECONDS`, so the hot path
makes no database round trip. Any write to `portals` committed through this process's engine (uninstall,
update, re-install, token changes — whoever issues it, models, CLI or tests) empties the cache once the
connection is back in the pool, i.e. after the commit. A write by another process (another gunicorn
worker, another host) is seen when the entry expires: an uninstall handled by worker A stops sessions on
worker B within PORTAL_CACHE_SECONDS at most. Session tokens live 15 minutes, so that is a small window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.sql.dml import UpdateBase

from database import Database, credentials, now, portals
from models import forms
from models.audit import AuditLog
from models.bitrix24 import Bitrix24Error, Bitrix24Rest, PortalClient, WebhookClient
from models.errors import ServiceError
from models.hosts import normalize_host
from models.refresh import RefreshEngine
from models.security import matches_hash, new_secret, token_hash
from models.vault import NEEDS_REAUTH, PORTAL_SUBJECT, Vault
from models.webhook import OtherPortal, Webhook

INSTALLED = "installed"
UNINSTALLED = "uninstalled"
API_TOKEN_TTL_DAYS = 90  # PORTAL_API_TOKEN_TTL_DAYS
PORTAL_CACHE_SECONDS = 5.0
_PORTALS_WRITTEN = "portals_written"  # flag in a pooled connection's info: this transaction wrote `portals`


class Rejected(ServiceError):
    """A request from Bitrix24 (or pretending to be) is refused; nothing was written.

    Carries a stable code only: the words are in `routes/i18n/core.py` under `error.<code>`.
    """

    def __init__(self, code: str, status: int = 403, **params):
        super().__init__(code, None, status, **params)


@dataclass(frozen=True)
class Portal:
    """An installed (or formerly installed) portal."""

    id: int
    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    status: str
    admin_user_id: int | None
    bot_id: int | None
    version: str | None
    language: str | None
    application_token_hash: str | None
    admin_token_hash: str | None
    setup_version: str | None = None
    uninstall_pending_at: int | None = None
    uninstall_pending_clean: bool = False

    @property
    def installed(self) -> bool:
        """True while the app is installed on the portal."""
        return self.status == INSTALLED


@dataclass(frozen=True)
class PortalSettings:
    """What the portal, install and identity services need from the config."""

    client_id: str
    public_url: str
    allow_loopback: bool
    oauth_url: str
    bot_code: str
    bot_name: str
    webhook: Webhook | None = None  # single-portal webhook mode (BITRIX24_WEBHOOK_URL)


def row_to_portal(row) -> Portal:
    """A Portal from a `portals` row."""
    return Portal(
        id=row.id,
        member_id=row.member_id,
        domain=row.domain,
        client_endpoint=row.client_endpoint,
        server_endpoint=row.server_endpoint,
        status=row.status,
        admin_user_id=row.admin_user_id,
        bot_id=row.bot_id,
        version=row.version,
        language=row.language,
        application_token_hash=row.application_token_hash,
        admin_token_hash=row.admin_token_hash,
        setup_version=row.setup_version,
        uninstall_pending_at=row.uninstall_pending_at,
        uninstall_pending_clean=bool(row.uninstall_pending_clean),
    )


class PortalCache:
    """Installed portals by id, kept for `ttl` seconds in this process (see the module docstring).

    A lookup that read the database while a write was being committed must not store what it read: the
    generation counter, bumped by every `clear()`, tells `put()` so.
    """

    def __init__(
        self, ttl: float = PORTAL_CACHE_SECONDS, max_items: int = 10_000, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl = ttl
        self.max_items = max_items
        self.clock = clock
        self.generation = 0
        self._items: dict[int, tuple[float, Portal]] = {}
        self._lock = threading.Lock()

    def get(self, portal_id: int) -> Portal | None:
        """The cached portal, or None when absent or expired."""
        hit = self._items.get(portal_id)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit[1]

    def put(self, portal: Portal, generation: int) -> None:
        """Keep a portal read while the cache was at `generation` (dropped if a write came since)."""
        with self._lock:
            if generation != self.generation:
                return
            if len(self._items) >= self.max_items:
                self._items.clear()
            self._items[portal.id] = (self.clock() + self.ttl, portal)

    def clear(self) -> None:
        """Forget every portal (a write to `portals` was committed in this process)."""
        with self._lock:
            self.generation += 1
            self._items.clear()


def _note_portal_write(conn, statement, *_args) -> None:
    # INSERT/UPDATE/DELETE on `portals`: mark the pooled connection; its checkin clears the cache.
    if isinstance(statement, UpdateBase) and statement.table is portals:
        conn.info[_PORTALS_WRITTEN] = True


class PortalService:
    """Portal lookups, the portal's REST client, UI alerts and per-portal API tokens."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        engine: RefreshEngine,
        rest: Bitrix24Rest,
        settings: PortalSettings,
        audit: AuditLog,
        cache_seconds: float = PORTAL_CACHE_SECONDS,
    ):
        self.db = db
        self.vault = vault
        self.engine = engine
        self.rest = rest
        self.settings = settings
        self.audit = audit
        self.cache = PortalCache(cache_seconds)
        sa.event.listen(db.engine, "after_execute", _note_portal_write)
        # Checkin comes after the commit (or rollback): a reader cannot re-cache the old row after this.
        sa.event.listen(db.engine, "checkin", self._forget_after_write)

    def _forget_after_write(self, _dbapi_connection, record) -> None:
        if record is not None and record.info.pop(_PORTALS_WRITTEN, False):
            self.cache.clear()

    # ---- lookups ---------------------------------------------------------------------------------

    def get(self, portal_id: int) -> Portal | None:
        """A portal by id."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.id == portal_id)).first()
        return row_to_portal(row) if row else None

    def session_portal(self, portal_id: int) -> Portal | None:
        """The installed portal of a session, from the per-process cache when fresh (None if not installed)."""
        portal = self.cache.get(portal_id)
        if portal is not None:
            return portal
        generation = self.cache.generation
        portal = self.get(portal_id)
        if portal is None or not portal.installed:
            return None
        self.cache.put(portal, generation)
        return portal

    def get_by_member(self, member_id: str) -> Portal | None:
        """A portal by its member_id."""
        if not member_id:
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.member_id == member_id)).first()
        return row_to_portal(row) if row else None

    def authenticate_event(self, payload: dict) -> Portal:
        """The portal of an event whose top-level auth[application_token] matches the stored one (constant-time)."""
        auth = payload.get("auth") if isinstance(payload.get("auth"), dict) else {}
        portal = self.get_by_member(forms.text(auth, "member_id"))
        if portal is None or not matches_hash(forms.text(auth, "application_token"), portal.application_token_hash):
            raise Rejected("bad_application_token", status=403)
        return portal

    def list(self) -> list[Portal]:
        """Every portal, oldest first (`flask portals list`, `flask doctor`)."""
        with self.db.read() as conn:
            return [row_to_portal(r) for r in conn.execute(sa.select(portals).order_by(portals.c.id))]

    def only_installed(self) -> Portal | None:
        """The installed portal when exactly one is installed (single-portal deployments), else None."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(portals).where(portals.c.status == INSTALLED).limit(2)).all()
        return row_to_portal(rows[0]) if len(rows) == 1 else None

    def counts(self) -> dict[str, int]:
        """Portals by status."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(portals.c.status, sa.func.count()).group_by(portals.c.status)).all()
        return {status: count for status, count in rows}

    def host(self, raw: str) -> str:
        """A portal host validated and normalised (raises InvalidHost; OtherPortal in webhook mode for
        any portal but the webhook's: installs and iframe opens from elsewhere are refused)."""
        host = normalize_host(raw, allow_loopback=self.settings.allow_loopback)
        webhook = self.settings.webhook
        if webhook is not None and host != webhook.host:
            raise OtherPortal(f"{host} is not the portal of BITRIX24_WEBHOOK_URL")
        return host

    def client(self, portal: Portal, credential_id: int | None = None) -> PortalClient:
        """A REST client acting with the portal's credential (or the given one); for the webhook portal, a
        WebhookClient (the credential then serves only the methods that need the app's context)."""
        webhook = self.settings.webhook
        if webhook is not None and portal.domain == webhook.host:
            if credential_id is None:
                cred = self.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
                credential_id = cred.id if cred is not None else None
            app_client = (
                PortalClient(self.rest, self.vault, self.engine, portal.client_endpoint, credential_id)
                if credential_id is not None
                else None
            )
            return WebhookClient(self.rest, webhook.url, app_client)
        if credential_id is None:
            cred = self.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
            if cred is None:
                raise Bitrix24Error("NO_CREDENTIAL", "the portal has no stored credential", 401)
            credential_id = cred.id
        return PortalClient(self.rest, self.vault, self.engine, portal.client_endpoint, credential_id)

    # ---- alerts and per-portal admin tokens ---------------------------------------------------------

    def alerts(self, portal_id: int) -> list[dict]:
        """Banners for the UI as codes: credentials of this portal that need re-authorisation."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(credentials.c.provider, credentials.c.subject, credentials.c.last_error).where(
                    credentials.c.portal_id == portal_id,
                    credentials.c.status == NEEDS_REAUTH,
                    credentials.c.subject.in_([PORTAL_SUBJECT, "account"]),
                )
            ).all()
        return [{"code": "needs_reauth", "provider": r.provider, "error": r.last_error} for r in rows]

    def issue_admin_token(self, portal_id: int, *, actor: str, ttl_days: int = API_TOKEN_TTL_DAYS) -> dict:
        """Create (or replace) the portal's own admin API token: {"token" (shown once), "issued_at", "expires_at"}."""
        token = new_secret(32)
        ts = now()
        expires_at = ts + max(1, int(ttl_days)) * 86400
        with self.db.write() as conn:
            conn.execute(
                sa.update(portals)
                .where(portals.c.id == portal_id)
                .values(
                    admin_token_hash=token_hash(token),
                    admin_token_issued_at=ts,
                    admin_token_expires_at=expires_at,
                    updated_at=ts,
                )
            )
        self._audit_token(portal_id, actor, "admin_token_issued", {"expires_at": expires_at})
        return {"token": token, "issued_at": ts, "expires_at": expires_at}

    def admin_token_status(self, portal_id: int) -> dict:
        """The portal's API token for the admin card, never its value: issued, issued_at, expires_at, expired."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(
                    portals.c.admin_token_hash, portals.c.admin_token_issued_at, portals.c.admin_token_expires_at
                ).where(portals.c.id == portal_id)
            ).first()
        if row is None or not row.admin_token_hash:
            return {"issued": False, "issued_at": None, "expires_at": None, "expired": False}
        expires_at = row.admin_token_expires_at
        return {
            "issued": True,
            "issued_at": row.admin_token_issued_at,
            "expires_at": expires_at,
            "expired": expires_at is None or expires_at <= now(),
        }

    def revoke_admin_token(self, portal_id: int, *, actor: str) -> bool:
        """Revoke the portal's API token at once; False when it had none."""
        with self.db.write() as conn:
            had = self.clear_api_tokens(portal_id, conn=conn)
        if had:
            self._audit_token(portal_id, actor, "admin_token_revoked")
        return had

    def clear_api_tokens(self, portal_id: int, conn=None) -> bool:
        """Forget the portal's API tokens (uninstall, re-install, revoke); True when one was there."""
        if conn is None:
            with self.db.write() as c:
                return self.clear_api_tokens(portal_id, conn=c)
        return (
            conn.execute(
                sa.update(portals)
                .where(portals.c.id == portal_id, portals.c.admin_token_hash.isnot(None))
                .values(admin_token_hash=None, admin_token_issued_at=None, admin_token_expires_at=None)
            ).rowcount
            == 1
        )

    def _audit_token(self, portal_id: int, actor: str, action: str, detail: dict | None = None) -> None:
        portal = self.get(portal_id)
        self.audit.record(actor, action, portal.member_id if portal else str(portal_id), detail)

    def portal_for_admin_token(self, token: str) -> Portal | None:
        """The installed portal whose unexpired admin token this is (hash lookup, then constant-time check)."""
        if not token:
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.admin_token_hash == token_hash(token))).first()
        if row is None or not matches_hash(token, row.admin_token_hash) or row.status != INSTALLED:
            return None
        if row.admin_token_expires_at is None or row.admin_token_expires_at <= now():
            return None
        return row_to_portal(row)

    def describe(self, portal: Portal) -> dict:
        """Public facts about a portal (no secrets)."""
        return {
            "id": portal.id,
            "member_id": portal.member_id,
            "domain": portal.domain,
            "status": portal.status,
            "version": portal.version,
            "bot_id": portal.bot_id,
            "admin_user_id": portal.admin_user_id,
            "uninstall_pending": portal.uninstall_pending_at is not None,
        }
