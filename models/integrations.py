"""Connected outside accounts: Yandex (one per portal, one per employee) and amoCRM; the token endpoint's logic."""

from __future__ import annotations

import re
import time

import sqlalchemy as sa

from database import credentials, telemost_restrictions
from models.audit import AuditLog
from models.errors import ServiceError
from models.oauth import AMOCRM_REFRESH_LIFETIME, PROVIDERS, AmoCRMOAuth, OAuthError, YandexOAuth
from models.refresh import RefreshEngine
from models.telemost import OrganizerToken
from models.vault import ACCOUNT_SUBJECT, ACTIVE, BROKEN, PORTAL_SUBJECT, Credential, TokenSet, Vault, user_subject

SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class IntegrationError(ServiceError):
    """A connect/register request cannot be completed; `status` is the HTTP status to answer."""


def _subject_for(provider: str) -> str:
    return PORTAL_SUBJECT if provider == "bitrix24" else ACCOUNT_SUBJECT


class Integrations:
    """Yandex and amoCRM accounts in the vault, and valid access tokens for other services."""

    def __init__(
        self,
        vault: Vault,
        engine: RefreshEngine,
        yandex: YandexOAuth,
        amocrm: AmoCRMOAuth,
        env_yandex_token: str = "",
        audit: AuditLog | None = None,
    ):
        self.audit = audit
        self.vault = vault
        self.engine = engine
        self.yandex = yandex
        self.amocrm = amocrm
        self.env_yandex_token = env_yandex_token

    # ---- Yandex --------------------------------------------------------------------------------------
    # The portal's account has subject "account"; an employee's own account has subject "user:<id>" (same
    # provider, same keeper). Conferences use the employee's own first, then the portal's.

    def _portal_yandex(self, portal_id: int) -> list[Credential]:
        return [c for c in self.vault.for_portal(portal_id, "yandex") if c.subject == ACCOUNT_SUBJECT]

    def _personal_yandex(self, portal_id: int, user_id: int) -> list[Credential]:
        subject = user_subject(user_id)
        return [c for c in self.vault.for_portal(portal_id, "yandex") if c.subject == subject]

    @staticmethod
    def _status_of(creds: list[Credential]) -> dict:
        if not creds:
            return {"connected": False, "account": None, "status": None}
        return {"connected": True, "account": creds[-1].label, "status": creds[-1].status}

    def yandex_status(self, portal_id: int) -> dict:
        """Whether the portal has a Yandex account connected, and in what state."""
        creds = self._portal_yandex(portal_id)
        return {**self._status_of(creds), "fallback": not creds and bool(self.env_yandex_token)}

    def yandex_personal_status(self, portal_id: int, user_id: int) -> dict:
        """Whether this employee connected their own Yandex account, and in what state."""
        return self._status_of(self._personal_yandex(portal_id, user_id))

    def _yandex_account(self, code: str) -> tuple[TokenSet, str, str]:
        """Exchange the consent code: (tokens, Yandex uid, label)."""
        if not code or len(code) > 256:
            raise IntegrationError("bad_code", status=400)
        try:
            tokens = self.yandex.exchange_code(code)
            info = self.yandex.user_info(tokens.access_token)
        except OAuthError as exc:
            raise IntegrationError("yandex_refused", status=502, reason=exc.code) from exc
        account = str(info["id"])
        label = str(info.get("default_email") or info.get("login") or account)[:255]
        return tokens, account, label

    def connect_yandex(self, portal_id: int, code: str, actor: str | None = None) -> dict:
        """Finish the Yandex connect flow: exchange the code and keep one account per portal."""
        tokens, account, label = self._yandex_account(code)
        existing = self.vault.find("yandex", account, ACCOUNT_SUBJECT)
        if existing is not None and existing.portal_id not in (None, portal_id):
            # One Yandex account serves one portal: taking it silently would cut the other portal off.
            raise IntegrationError("account_in_use", status=409)
        for old in self._portal_yandex(portal_id):
            if old.account != account:
                self.vault.delete(old.id)
        self.vault.store("yandex", account, ACCOUNT_SUBJECT, tokens, portal_id=portal_id, label=label, reason="connect")
        self._audit(actor, "yandex_connected", str(portal_id), {"account": label})
        return {"connected": True, "account": label, "status": ACTIVE}

    def connect_yandex_personal(self, portal_id: int, user_id: int, code: str) -> dict:
        """Finish an employee's own Yandex connection: one Yandex account is personal to one user of one portal."""
        tokens, account, label = self._yandex_account(code)
        subject = user_subject(user_id)
        # Check and store in one write transaction, so two users cannot both take the account at once.
        with self.vault.db.write() as conn:
            holders = conn.execute(
                sa.select(credentials.c.portal_id, credentials.c.subject).where(
                    credentials.c.provider == "yandex",
                    credentials.c.account == account,
                    credentials.c.subject.like("user:%"),
                )
            ).all()
            if any((row.portal_id, row.subject) != (portal_id, subject) for row in holders):
                raise IntegrationError("account_in_use_personal", status=409)
            kept = self.vault.store(
                "yandex",
                account,
                subject,
                tokens,
                portal_id=portal_id,
                user_id=user_id,
                label=label,
                reason="connect",
                conn=conn,
            )
        for old in self._personal_yandex(portal_id, user_id):
            if old.id != kept:
                self.vault.delete(old.id)
        self._audit(f"user:{portal_id}:{user_id}", "yandex_personal_connected", account)
        return {"connected": True, "account": label, "status": ACTIVE}

    def disconnect_yandex(self, portal_id: int) -> bool:
        """Forget the portal's Yandex account (employees' own accounts stay)."""
        removed = False
        for cred in self._portal_yandex(portal_id):
            removed = self.vault.delete(cred.id) or removed
        return removed

    def disconnect_yandex_personal(self, portal_id: int, user_id: int) -> bool:
        """Forget this employee's own Yandex account."""
        removed = False
        for cred in self._personal_yandex(portal_id, user_id):
            removed = self.vault.delete(cred.id) or removed
        if removed:
            self._audit(f"user:{portal_id}:{user_id}", "yandex_personal_disconnected", str(portal_id))
        return removed

    def yandex_token(self, portal_id: int) -> str | None:
        """A valid Yandex token for the portal, or YANDEX_OAUTH_TOKEN for single-portal set-ups."""
        creds = self._portal_yandex(portal_id)
        if creds:
            cred = self.engine.ensure_fresh(creds[-1].id)
            if cred is not None and cred.status == ACTIVE:
                self.vault.mark_used(cred.id, cred.last_used_at)
                return cred.access_token
            return None
        return self.env_yandex_token or None

    def organizer_token(self, portal_id: int, user_id: int) -> OrganizerToken:
        """Whose Yandex account organises this user's meetings: their own, else the portal's, else refuse.

        The personal credential is provider "yandex", subject `user:<bitrix user id>` on this portal; a
        dead personal credential is not silently replaced by the portal's account (the meetings would
        change organiser): the user is asked to reconnect.
        """
        creds = self.vault.for_portal(portal_id, "yandex")
        personal = [c for c in creds if c.subject == user_subject(user_id)]
        shared = [c for c in creds if c.subject == ACCOUNT_SUBJECT]
        chosen = (personal or shared or [None])[-1]
        if chosen is None:
            if self.env_yandex_token:
                return OrganizerToken(self.env_yandex_token, None, "env", personal=False)
            raise ServiceError("yandex_not_connected", status=409)
        cred = self.engine.ensure_fresh(chosen.id)
        if cred is None or cred.status != ACTIVE or cred.expires_at <= time.time():
            raise ServiceError("yandex_reconnect_required", status=409, personal=bool(personal))
        self.vault.mark_used(cred.id, cred.last_used_at)
        with self.vault.db.read() as conn:
            restricted = (
                conn.execute(
                    sa.select(telemost_restrictions.c.credential_id).where(
                        telemost_restrictions.c.credential_id == cred.id
                    )
                ).first()
                is not None
            )
        return OrganizerToken(
            cred.access_token, cred.id, cred.label or cred.account, personal=bool(personal), restricted=restricted
        )

    # ---- amoCRM --------------------------------------------------------------------------------------

    def register_amocrm(
        self,
        subdomain: str,
        *,
        code: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        expires_in: int | None = None,
        portal_id: int | None = None,
        actor: str | None = None,
    ) -> dict:
        """Register an amoCRM account from an authorization code or an initial token pair."""
        subdomain = (subdomain or "").strip().lower()
        if not SUBDOMAIN.match(subdomain):
            raise IntegrationError("bad_subdomain", status=400)
        if code:
            try:
                tokens = self.amocrm.exchange_code(subdomain, code)
            except OAuthError as exc:
                status = 502 if not exc.permanent else 400
                raise IntegrationError("amocrm_refused", status=status, reason=exc.code) from exc
        elif access_token:
            # Without a refresh token this is a long-lived token (private integrations, 1 day to
            # 5 years): nothing to refresh, the keeper only watches its expiry (admin status).
            if len(access_token) > 4096 or len(refresh_token or "") > 4096:
                raise IntegrationError("bad_tokens", status=400)
            if not refresh_token and not expires_in:
                raise IntegrationError("missing_fields", status=400)
            now = int(time.time())
            ttl = int(expires_in) if expires_in else 86400
            if not 0 < ttl <= 5 * 366 * 86400:
                raise IntegrationError("bad_tokens", status=400)
            tokens = TokenSet(
                access_token, refresh_token or None, now + ttl, now + AMOCRM_REFRESH_LIFETIME if refresh_token else None
            )
        else:
            raise IntegrationError("missing_fields", status=400)
        cred_id = self.vault.store(
            "amocrm", subdomain, ACCOUNT_SUBJECT, tokens, portal_id=portal_id, label=subdomain, reason="register"
        )
        self._audit(actor, "amocrm_registered", subdomain)
        return self.describe(cred_id)

    def amocrm_subdomain(self, referer: str) -> str:
        """The account subdomain from amoCRM's `referer` (`<sub>.amocrm.ru`), only for the family we
        talk to (AMOCRM_BASE_URL): a Kommo referer cannot be exchanged at amocrm.ru, nor the reverse."""
        host = (referer or "").strip().lower()
        suffix = ".kommo.com" if "kommo.com" in self.amocrm.base_url else ".amocrm.ru"
        sub = host[: -len(suffix)] if host.endswith(suffix) else ""
        return sub if SUBDOMAIN.match(sub) else ""

    def list_amocrm(self) -> list[dict]:
        """Registered amoCRM accounts (no tokens)."""
        return [self._public(row) for row in self.vault.list(provider="amocrm")]

    def delete_amocrm(self, subdomain: str, actor: str | None = None) -> bool:
        """Forget an amoCRM account."""
        cred = self.vault.find("amocrm", (subdomain or "").lower(), ACCOUNT_SUBJECT)
        deleted = bool(cred) and self.vault.delete(cred.id)
        if deleted:
            self._audit(actor, "amocrm_deleted", subdomain)
        return deleted

    def _audit(self, actor: str | None, action: str, target: str, detail: dict | None = None) -> None:
        if self.audit is not None:
            self.audit.record(actor or "system", action, target, detail)

    # ---- token endpoint --------------------------------------------------------------------------------

    def read_token(self, provider: str, account: str, *, actor: str, ip: str | None = None) -> dict:
        """valid_token for the token endpoint: every read, and every failed one, is audited."""
        target = f"{provider}/{account}"
        try:
            result = self.valid_token(provider, account)
        except IntegrationError as exc:
            self._audit(actor, "token_read_failed", target, {"error": exc.code, "ip": ip})
            raise
        self._audit(actor, "token_read", target, {"version": result["version"], "ip": ip})
        return result

    def valid_token(self, provider: str, account: str) -> dict:
        """A currently valid access token (refreshing first if due); never the refresh token."""
        if provider not in PROVIDERS:
            raise IntegrationError("unknown_provider", status=404)
        cred = self.vault.find(provider, account, _subject_for(provider))
        if cred is None:
            raise IntegrationError("not_found", status=404)
        if cred.status == BROKEN:  # quarantined: no configured key decrypts it (words: routes/i18n/keeper.py)
            raise IntegrationError("credential_broken", status=409)
        if (
            cred.status == ACTIVE
            and cred.refresh_token
            and (self.engine.is_due(cred) or cred.expires_at - time.time() < 300)
        ):
            self.engine.refresh(
                cred.id, force=cred.expires_at - time.time() < 300, seen_version=cred.version, wait_for_peer=True
            )
            self.engine.flush()
            cred = self.vault.get(cred.id)
        if cred is None or cred.status != ACTIVE:
            raise IntegrationError("needs_reauth", status=409)
        if cred.expires_at <= time.time():
            if not cred.refresh_token:
                raise IntegrationError("needs_reauth", status=409, long_lived=True)
            raise IntegrationError("unavailable", status=503)
        self.vault.mark_used(cred.id, cred.last_used_at)
        return {
            "provider": provider,
            "account": account,
            "access_token": cred.access_token,
            "expires_at": cred.expires_at,
            "version": cred.version,
        }

    def credential_portal(self, provider: str, account: str) -> int | None:
        """The portal a credential belongs to (for per-portal admin tokens)."""
        cred = self.vault.find(provider, account, _subject_for(provider))
        return cred.portal_id if cred else None

    def describe(self, credential_id: int) -> dict:
        """Public facts about a credential."""
        cred = self.vault.get(credential_id)
        return {
            "id": cred.id,
            "provider": cred.provider,
            "account": cred.account,
            "status": cred.status,
            "expires_at": cred.expires_at,
            "refresh_expires_at": cred.refresh_expires_at,
            "version": cred.version,
            "last_error": cred.last_error,
            "portal_id": cred.portal_id,
        }

    @staticmethod
    def _public(row: dict) -> dict:
        keys = (
            "id",
            "provider",
            "account",
            "subject",
            "portal_id",
            "label",
            "status",
            "expires_at",
            "refresh_expires_at",
            "version",
            "failure_count",
            "last_error",
            "refreshed_at",
            "last_used_at",
        )
        return {k: row.get(k) for k in keys}
