"""Installed portals: install (event and installer page), update, uninstall, iframe identity.

Trust rules (DESIGN.md "Identity and trust"):
- the first ONAPPINSTALL (and the installer page) is trusted only after its access token is proven
  ours at the OAuth server (`app.info`: our client_id), which also supplies the trusted member_id,
  domain and REST endpoint; the installing user must be a portal admin;
- every later event must carry the stored application_token (constant-time check);
- an iframe open is trusted when the portal is installed, the domain matches, the application token
  matches and the access token works for our app on that portal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa

from database import Database, credentials, now, portals
from models import forms, openlines
from models.bitrix24 import Bitrix24Error, Bitrix24Rest, Bitrix24Unavailable, PortalClient
from models.errors import ServiceError
from models.hosts import InvalidHost, endpoint_host, normalize_endpoint, normalize_host
from models.oauth import KNOWN_BITRIX_OAUTH_HOSTS, Bitrix24OAuth, OAuthError
from models.refresh import RefreshEngine
from models.security import Identity, matches_hash, new_secret, token_hash
from models.vault import ACTIVE, NEEDS_REAUTH, PORTAL_SUBJECT, TokenSet, Vault, user_subject

log = logging.getLogger(__name__)

INSTALLED = "installed"
UNINSTALLED = "uninstalled"
BITRIX_REFRESH_LIFETIME = 180 * 24 * 3600
API_TOKEN_TTL_DAYS = 90  # PORTAL_API_TOKEN_TTL_DAYS


class Rejected(ServiceError):
    """A request from Bitrix24 (or pretending to be) is refused; nothing was written."""

    def __init__(self, code: str, message: str, status: int = 403):
        super().__init__(code, message, status)


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

    @property
    def installed(self) -> bool:
        """True while the app is installed on the portal."""
        return self.status == INSTALLED


@dataclass(frozen=True)
class TrustedAuth:
    """What the OAuth server confirmed about a token."""

    member_id: str
    domain: str
    client_endpoint: str
    user_id: int | None
    scope: str
    app_status: str


@dataclass
class InstallResult:
    """Outcome of an install, shown by the installer page or returned to the event."""

    portal: Portal
    ok: bool
    bot_id: int | None = None
    error: str | None = None
    message: str = ""


@dataclass(frozen=True)
class PortalSettings:
    """What the portal service needs from the config."""

    client_id: str
    public_url: str
    allow_loopback: bool
    oauth_url: str
    bot_code: str
    bot_name: str


def _row_to_portal(row) -> Portal:
    return Portal(
        id=row.id, member_id=row.member_id, domain=row.domain, client_endpoint=row.client_endpoint,
        server_endpoint=row.server_endpoint, status=row.status, admin_user_id=row.admin_user_id,
        bot_id=row.bot_id, version=row.version, language=row.language,
        application_token_hash=row.application_token_hash, admin_token_hash=row.admin_token_hash,
    )


class PortalService:
    """Install lifecycle and identity checks for Bitrix24 portals."""

    def __init__(self, db: Database, vault: Vault, engine: RefreshEngine, oauth: Bitrix24OAuth,
                 rest: Bitrix24Rest, settings: PortalSettings):
        self.db = db
        self.vault = vault
        self.engine = engine
        self.oauth = oauth
        self.rest = rest
        self.settings = settings

    # ---- lookups ---------------------------------------------------------------------------------

    def get(self, portal_id: int) -> Portal | None:
        """A portal by id."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.id == portal_id)).first()
        return _row_to_portal(row) if row else None

    def get_by_member(self, member_id: str) -> Portal | None:
        """A portal by its member_id."""
        if not member_id:
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.member_id == member_id)).first()
        return _row_to_portal(row) if row else None

    def list(self) -> list[Portal]:
        """Every portal."""
        with self.db.read() as conn:
            return [_row_to_portal(r) for r in conn.execute(sa.select(portals).order_by(portals.c.id))]

    def counts(self) -> dict[str, int]:
        """Portals by status."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(portals.c.status, sa.func.count()).group_by(portals.c.status)).all()
        return {status: count for status, count in rows}

    def client(self, portal: Portal, credential_id: int | None = None) -> PortalClient:
        """A REST client acting with the portal's credential (or the given one)."""
        if credential_id is None:
            cred = self.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
            if cred is None:
                raise Bitrix24Error("NO_CREDENTIAL", "the portal has no stored credential", 401)
            credential_id = cred.id
        return PortalClient(self.rest, self.vault, self.engine, portal.client_endpoint, credential_id)

    # ---- proving tokens ---------------------------------------------------------------------------

    def _host(self, raw: str) -> str:
        return normalize_host(raw, allow_loopback=self.settings.allow_loopback)

    def prove(self, access_token: str, *, member_id: str | None, domain: str | None) -> TrustedAuth:
        """Ask the OAuth server whose token this is; refuse foreign apps and mismatched portals."""
        if not access_token:
            raise Rejected("missing_token", "no access token in the request", 401)
        try:
            info = self.oauth.app_info(access_token)
        except OAuthError as exc:
            if not exc.permanent:
                raise Rejected("oauth_unavailable", "Bitrix24 OAuth server did not answer; try again", 503) from exc
            raise Rejected("token_not_valid", "the access token is not valid", 401) from exc
        if str(info.get("client_id") or "") != self.settings.client_id:
            raise Rejected("foreign_app", "the token belongs to another application", 403)
        install = info.get("install") if isinstance(info.get("install"), dict) else {}
        trusted_member = str(install.get("member_id") or "")
        if not trusted_member or (member_id and member_id != trusted_member):
            raise Rejected("member_mismatch", "the token belongs to another portal", 403)
        try:
            trusted_domain = self._host(str(install.get("domain") or ""))
            endpoint = normalize_endpoint(str(install.get("client_endpoint") or f"https://{trusted_domain}/rest/"),
                                          allow_loopback=self.settings.allow_loopback)
            if domain is not None and self._host(domain) != trusted_domain:
                raise Rejected("domain_mismatch", "the portal domain does not match the token", 403)
        except InvalidHost as exc:
            raise Rejected("invalid_host", f"portal host refused: {exc}", 400) from exc
        if endpoint_host(endpoint) != trusted_domain:
            raise Rejected("endpoint_mismatch", "the REST endpoint is not on the portal's domain", 403)
        user_id = forms.integer(info, "user_id")
        return TrustedAuth(trusted_member, trusted_domain, endpoint, user_id, str(info.get("scope") or ""),
                           str(install.get("status") or info.get("status") or ""))

    def _is_admin(self, endpoint: str, access_token: str) -> bool:
        try:
            profile = self.rest.call(endpoint, access_token, "profile").result
        except Bitrix24Unavailable as exc:
            raise Rejected("portal_unavailable", "the portal did not answer; try again", 503) from exc
        except Bitrix24Error as exc:
            raise Rejected("portal_refused", f"the portal refused the token ({exc.code})", 403) from exc
        return isinstance(profile, dict) and profile.get("ADMIN") is True

    def _server_endpoint(self, claimed: str) -> str:
        """Keep a claimed server_endpoint only when it names a known Bitrix24 OAuth server."""
        configured = f"{self.settings.oauth_url.rstrip('/')}/rest/"
        parts = urlsplit(claimed or "")
        if parts.scheme == "https" and parts.netloc in KNOWN_BITRIX_OAUTH_HOSTS:
            return f"https://{parts.netloc}/rest/"
        return configured

    # ---- install ------------------------------------------------------------------------------------

    def install_from_event(self, payload: dict) -> InstallResult:
        """ONAPPINSTALL: prove the tokens, record the portal and its credential, set the portal up."""
        auth = payload.get("auth") if isinstance(payload.get("auth"), dict) else {}
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        access_token = forms.text(auth, "access_token")
        refresh_token = forms.text(auth, "refresh_token")
        app_token = forms.text(auth, "application_token")
        if not app_token or not refresh_token:
            raise Rejected("missing_fields", "ONAPPINSTALL needs auth[application_token] and tokens", 400)
        trusted = self.prove(access_token, member_id=forms.text(auth, "member_id") or None,
                             domain=forms.text(auth, "domain") or None)
        return self._install(
            trusted, access_token, refresh_token, forms.integer(auth, "expires_in", 3600) or 3600, app_token,
            server_endpoint=forms.text(auth, "server_endpoint"), version=forms.text(data, "VERSION"),
            language=forms.text(data, "LANGUAGE_ID"),
        )

    def install_from_installer(self, fields: dict) -> InstallResult:
        """The installer page opened in the iframe (§1.2 POST)."""
        access_token = forms.text(fields, "AUTH_ID")
        refresh_token = forms.text(fields, "REFRESH_ID")
        app_token = forms.text(fields, "APPLICATION_TOKEN")
        if not access_token or not refresh_token or not app_token:
            raise Rejected("missing_fields", "open the installer from Bitrix24: AUTH_ID, REFRESH_ID and "
                           "APPLICATION_TOKEN are required", 400)
        trusted = self.prove(access_token, member_id=forms.text(fields, "member_id") or None,
                             domain=forms.text(fields, "DOMAIN") or "")
        return self._install(
            trusted, access_token, refresh_token, forms.integer(fields, "AUTH_EXPIRES", 3600) or 3600, app_token,
            server_endpoint=forms.text(fields, "SERVER_ENDPOINT"), version=None,
            language=forms.text(fields, "LANG"),
        )

    def _install(self, trusted: TrustedAuth, access_token: str, refresh_token: str, expires_in: int,
                 app_token: str, *, server_endpoint: str, version: str | None, language: str | None) -> InstallResult:
        if not self._is_admin(trusted.client_endpoint, access_token):
            raise Rejected("not_admin", "only a portal administrator can install the application", 403)
        ts = now()
        tokens = TokenSet(access_token, refresh_token, ts + max(60, min(expires_in, 86400)),
                          ts + BITRIX_REFRESH_LIFETIME)
        values = {
            "domain": trusted.domain,
            "client_endpoint": trusted.client_endpoint,
            "server_endpoint": self._server_endpoint(server_endpoint),
            "application_token_hash": token_hash(app_token),
            "status": INSTALLED,
            "app_status": trusted.app_status[:4] or None,
            "scope": trusted.scope,
            "admin_user_id": trusted.user_id,
            "updated_at": ts,
            "uninstalled_at": None,
        }
        if version:
            values["version"] = version[:32]
        if language:
            values["language"] = language[:8]
        with self.db.write() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.member_id == trusted.member_id)).first()
            if row is None:
                portal_id = conn.execute(
                    sa.insert(portals).values(member_id=trusted.member_id, installed_at=ts, **values)
                ).inserted_primary_key[0]
            else:
                portal_id = row.id
                if row.application_token_hash and row.application_token_hash != values["application_token_hash"]:
                    log.warning("portal %s re-installed with a new application token", trusted.member_id)
                conn.execute(sa.update(portals).where(portals.c.id == portal_id).values(**values))
            self.clear_api_tokens(portal_id, conn=conn)
            self.vault.store("bitrix24", trusted.member_id, PORTAL_SUBJECT, tokens, portal_id=portal_id,
                             user_id=trusted.user_id, endpoint=values["server_endpoint"], reason="install",
                             label=trusted.domain, conn=conn)
        portal = self.get(portal_id)
        log.info("portal %s (%s) installed", portal.member_id, portal.domain)
        return self.setup(portal)

    def setup(self, portal: Portal) -> InstallResult:
        """Register the Open Lines bot and bind the app events (idempotent; re-run on update)."""
        base = self.settings.public_url.rstrip("/")
        try:
            client = self.client(portal)
            answer = client.batch(openlines.setup_commands(portal, self.settings))
            bot_id = openlines.record_setup(self.db, portal, answer, self.settings.bot_code)
            for event in ("ONAPPUNINSTALL", "ONAPPUPDATE"):
                try:
                    client.call("event.bind", {"event": event, "handler": f"{base}/events"})
                except Bitrix24Error as exc:
                    if "already" not in exc.description.lower():
                        raise
        except Bitrix24Error as exc:
            log.warning("setup of portal %s failed: %s", portal.member_id, exc.code)
            return InstallResult(portal, ok=False, error="setup_failed",
                                 message=f"Bitrix24 refused the set-up call ({exc.code}). Open the installer again.")
        bot = int(bot_id) if str(bot_id).isdigit() else None
        with self.db.write() as conn:
            conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(bot_id=bot, updated_at=now()))
        return InstallResult(self.get(portal.id), ok=True, bot_id=bot, message="installed")

    # ---- events after install -----------------------------------------------------------------------

    def authenticate_event(self, payload: dict) -> Portal:
        """The portal of an event whose top-level auth[application_token] matches the stored one."""
        auth = payload.get("auth") if isinstance(payload.get("auth"), dict) else {}
        portal = self.get_by_member(forms.text(auth, "member_id"))
        if portal is None or not matches_hash(forms.text(auth, "application_token"), portal.application_token_hash):
            raise Rejected("bad_application_token", "unknown portal or wrong application token", 403)
        return portal

    def handle_update(self, payload: dict) -> InstallResult:
        """ONAPPUPDATE: new version, fresh tokens, maybe a new application token; re-bind handlers.

        The application token alone is not enough to replace stored tokens (every employee sees it in
        the iframe POST): a new pair or a new application token is taken only from an admin's token
        proven ours at the OAuth server. All network checks happen before the write transaction.
        """
        auth = payload.get("auth") if isinstance(payload.get("auth"), dict) else {}
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        access, refresh = forms.text(auth, "access_token"), forms.text(auth, "refresh_token")
        try:
            portal = self.authenticate_event(payload)
            token_matches = True
        except Rejected:
            portal = self.get_by_member(forms.text(auth, "member_id"))
            if portal is None:
                raise
            token_matches = False
        if not portal.installed:
            raise Rejected("not_installed", "the application is not installed on this portal", 403)
        trusted = None
        if access:
            try:
                trusted = self.prove(access, member_id=portal.member_id, domain=portal.domain)
                if not self._is_admin(trusted.client_endpoint, access):
                    trusted = None
            except Rejected:
                trusted = None
        if not token_matches and trusted is None:
            # Bitrix24 may send an updated application token: accept it only with an admin's proven token.
            raise Rejected("not_admin", "the update event does not come from a portal administrator", 403)
        ts = now()
        values = {"updated_at": ts}
        if forms.text(data, "VERSION"):
            values["version"] = forms.text(data, "VERSION")[:32]
        if trusted is not None and forms.text(auth, "application_token"):
            values["application_token_hash"] = token_hash(forms.text(auth, "application_token"))
        with self.db.write() as conn:
            conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(**values))
            if trusted is not None and refresh:
                expires_in = max(60, min(forms.integer(auth, "expires_in", 3600) or 3600, 86400))
                tokens = TokenSet(access, refresh, ts + expires_in, ts + BITRIX_REFRESH_LIFETIME)
                self.vault.store("bitrix24", portal.member_id, PORTAL_SUBJECT, tokens, portal_id=portal.id,
                                 user_id=trusted.user_id, reason="update", conn=conn)
        return self.setup(self.get(portal.id))

    def handle_uninstall(self, payload: dict) -> Portal:
        """ONAPPUNINSTALL: only with the stored application token; CLEAN=1 deletes the portal's data.

        The token is the only check the event allows (spec §1.6), and employees can read it in the
        iframe POST; so before deleting anything, a still-working stored token that Bitrix24 says is
        installed means the event is forged.
        """
        portal = self.authenticate_event(payload)
        if self._still_installed(portal):
            raise Rejected("still_installed", "Bitrix24 still reports the application as installed", 403)
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        clean = forms.text(data, "CLEAN") == "1"
        ts = now()
        with self.db.write() as conn:
            self.vault.revoke_portal(portal.id, delete=clean, conn=conn)
            self.clear_api_tokens(portal.id, conn=conn)
            values = {"status": UNINSTALLED, "uninstalled_at": ts, "updated_at": ts, "bot_id": None}
            if clean:
                values.update(admin_token_hash=None)
            conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(**values))
        log.info("portal %s uninstalled (clean=%s)", portal.member_id, clean)
        return self.get(portal.id)

    def _still_installed(self, portal: Portal) -> bool:
        """True only when a stored, unexpired token still works and the OAuth server says installed."""
        cred = self.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
        if cred is None or cred.status != ACTIVE or cred.expires_at <= now():
            return False
        try:
            info = self.oauth.app_info(cred.access_token)
        except OAuthError:
            return False  # revoked (as on a real uninstall) or unreachable: trust the event
        install = info.get("install") if isinstance(info.get("install"), dict) else {}
        return bool(install.get("installed")) and str(install.get("member_id") or "") == portal.member_id

    # ---- iframe identity ------------------------------------------------------------------------------

    def verify_frame(self, fields: dict) -> tuple[Identity, Portal]:
        """Verify the iframe POST and return who is looking; stores the user's fresh pair."""
        identity, portal, access_token = self._verify_user(
            forms.text(fields, "AUTH_ID"), forms.text(fields, "member_id"), forms.text(fields, "DOMAIN"),
            application_token=forms.text(fields, "APPLICATION_TOKEN"), require_app_token=True,
        )
        refresh_token = forms.text(fields, "REFRESH_ID")
        if refresh_token:
            self._store_user_pair(portal, identity, access_token, refresh_token,
                                  forms.integer(fields, "AUTH_EXPIRES", 3600) or 3600)
        return identity, portal

    def verify_session(self, access_token: str, member_id: str, domain: str) -> tuple[Identity, Portal]:
        """Verify a fresh Bitrix24 auth from the frame SDK (session renewal)."""
        identity, portal, _ = self._verify_user(access_token, member_id, domain, application_token="",
                                                require_app_token=False)
        return identity, portal

    def _verify_user(self, access_token: str, member_id: str, domain: str, *, application_token: str,
                     require_app_token: bool) -> tuple[Identity, Portal, str]:
        if not access_token or not member_id or not domain:
            raise Rejected("missing_fields", "open the application from your Bitrix24 portal", 401)
        try:
            host = self._host(domain)
        except InvalidHost as exc:
            raise Rejected("invalid_host", f"portal host refused: {exc}", 400) from exc
        portal = self.get_by_member(member_id)
        if portal is None or not portal.installed:
            raise Rejected("not_installed", "the application is not installed on this portal", 401)
        if portal.domain != host:
            raise Rejected("domain_mismatch", "the portal domain does not match the installed portal", 401)
        if require_app_token and not matches_hash(application_token, portal.application_token_hash):
            raise Rejected("bad_application_token", "the application token does not match", 401)
        self.prove(access_token, member_id=portal.member_id, domain=portal.domain)
        try:
            answer = self.rest.call(portal.client_endpoint, access_token, "batch",
                                    {"halt": 0, "cmd": {"user": "user.current", "profile": "profile"}}).result
        except Bitrix24Unavailable as exc:
            raise Rejected("portal_unavailable", "the portal did not answer; try again", 503) from exc
        except Bitrix24Error as exc:
            raise Rejected("portal_refused", f"the portal refused the token ({exc.code})", 401) from exc
        results = answer.get("result") if isinstance(answer, dict) else None
        user = results.get("user") if isinstance(results, dict) else None
        profile = results.get("profile") if isinstance(results, dict) else None
        if not isinstance(user, dict) or not str(user.get("ID", "")).isdigit():
            raise Rejected("portal_refused", "the portal did not say who the user is", 401)
        first, last = str(user.get("NAME") or ""), str(user.get("LAST_NAME") or "")
        identity = Identity(
            member_id=portal.member_id,
            user_id=int(user["ID"]),
            portal_id=portal.id,
            domain=portal.domain,
            name=(f"{first} {last}".strip() or f"#{user['ID']}")[:120],
            is_admin=isinstance(profile, dict) and profile.get("ADMIN") is True,
        )
        return identity, portal, access_token

    def _store_user_pair(self, portal: Portal, identity: Identity, access_token: str, refresh_token: str,
                         expires_in: int) -> None:
        ts = now()
        tokens = TokenSet(access_token, refresh_token, ts + max(60, min(expires_in, 86400)),
                          ts + BITRIX_REFRESH_LIFETIME)
        portal_cred = self.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
        if identity.is_admin and (portal_cred is None or portal_cred.status != ACTIVE):
            # Self-healing: the portal credential is dead and an admin is here with a fresh pair.
            # The pair goes to the portal credential only (never to two rows: each row would spend it).
            self.vault.store("bitrix24", portal.member_id, PORTAL_SUBJECT, tokens, portal_id=portal.id,
                             user_id=identity.user_id, endpoint=portal.server_endpoint, reason="reauth",
                             label=portal.domain)
            log.info("portal %s credential restored from admin %s", portal.member_id, identity.user_id)
            return
        self.vault.store("bitrix24", portal.member_id, user_subject(identity.user_id), tokens,
                         portal_id=portal.id, user_id=identity.user_id, endpoint=portal.server_endpoint,
                         reason="frame", label=identity.name, used=False)

    # ---- alerts and per-portal admin tokens ---------------------------------------------------------

    def alerts(self, portal_id: int) -> list[dict]:
        """Banners for the UI: credentials of this portal that need re-authorisation."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(credentials.c.provider, credentials.c.subject, credentials.c.last_error).where(
                    credentials.c.portal_id == portal_id, credentials.c.status == NEEDS_REAUTH,
                    credentials.c.subject.in_([PORTAL_SUBJECT, "account"]),
                )
            ).all()
        messages = {
            "bitrix24": "Приложение потеряло доступ к порталу. Администратору нужно открыть приложение, "
                        "чтобы восстановить доступ (или переустановить его).",
            "yandex": "Доступ к Яндекс Телемосту истёк или отозван. Администратору нужно заново подключить "
                      "Яндекс в разделе «Интеграции».",
            "amocrm": "Доступ к amoCRM истёк или отозван: подключите аккаунт заново.",
        }
        return [{"code": "needs_reauth", "provider": r.provider, "error": r.last_error,
                 "message": messages.get(r.provider, "Нужна повторная авторизация.")} for r in rows]

    def issue_admin_token(self, portal_id: int, *, actor: str, ttl_days: int = API_TOKEN_TTL_DAYS) -> dict:
        """Create (or replace) the portal's own admin API token: {"token" (shown once), "issued_at", "expires_at"}."""
        token = new_secret(32)
        ts = now()
        expires_at = ts + max(1, int(ttl_days)) * 86400
        with self.db.write() as conn:
            conn.execute(sa.update(portals).where(portals.c.id == portal_id).values(
                admin_token_hash=token_hash(token), admin_token_issued_at=ts, admin_token_expires_at=expires_at,
                updated_at=ts))
        self._audit_token(portal_id, actor, "admin_token_issued", {"expires_at": expires_at})
        return {"token": token, "issued_at": ts, "expires_at": expires_at}

    def admin_token_status(self, portal_id: int) -> dict:
        """The portal's API token for the admin card, never its value: issued, issued_at, expires_at, expired."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals.c.admin_token_hash, portals.c.admin_token_issued_at,
                                         portals.c.admin_token_expires_at).where(portals.c.id == portal_id)).first()
        if row is None or not row.admin_token_hash:
            return {"issued": False, "issued_at": None, "expires_at": None, "expired": False}
        expires_at = row.admin_token_expires_at
        return {"issued": True, "issued_at": row.admin_token_issued_at, "expires_at": expires_at,
                "expired": expires_at is None or expires_at <= now()}

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
        return conn.execute(sa.update(portals).where(portals.c.id == portal_id, portals.c.admin_token_hash.isnot(None))
                            .values(admin_token_hash=None, admin_token_issued_at=None,
                                    admin_token_expires_at=None)).rowcount == 1

    def _audit_token(self, portal_id: int, actor: str, action: str, detail: dict | None = None) -> None:
        portal = self.get(portal_id)
        self.vault.audit(actor, action, portal.member_id if portal else str(portal_id), detail)

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
        return _row_to_portal(row)

    def describe(self, portal: Portal) -> dict:
        """Public facts about a portal (no secrets)."""
        return {"id": portal.id, "member_id": portal.member_id, "domain": portal.domain, "status": portal.status,
                "version": portal.version, "bot_id": portal.bot_id, "admin_user_id": portal.admin_user_id}

