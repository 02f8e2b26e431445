"""Install (ONAPPINSTALL event and installer page), set-up, update, uninstall, and the proof at the OAuth server.

Trust rules (DESIGN.md "Identity and trust"):
- the first ONAPPINSTALL (and the installer page) is trusted only after its access token is proven
  ours at the OAuth server (`app.info`: our client_id), which also supplies the trusted member_id,
  domain and REST endpoint; the installing user must be a portal admin;
- every later event must carry the stored application_token (constant-time check) — but every
  employee can read that token in the iframe POST, so it is never enough on its own:
  - ONAPPUPDATE writes something (version, tokens, application token) and runs set-up only with an
    admin's token proven ours; set-up runs once per version;
  - ONAPPUNINSTALL is honoured only on positive proof that Bitrix24 no longer has the app on the portal,
    asked with our own stored credential (refreshed through the token keeper when expired). A working
    token that says "installed" proves the event forged; a transient answer leaves the event pending,
    re-checked by the next task run (`recheck_pending_uninstalls`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from database import Database, now, portals
from models import crm, forms, openlines
from models.alerts import Translate
from models.audit import AuditLog
from models.bitrix24 import Bitrix24Error, Bitrix24Rest, Bitrix24Unavailable
from models.hosts import InvalidHost, endpoint_host, normalize_endpoint
from models.oauth import BITRIX_REFRESH_LIFETIME, KNOWN_BITRIX_OAUTH_HOSTS, Bitrix24OAuth, OAuthError
from models.portal import INSTALLED, UNINSTALLED, Portal, PortalService, PortalSettings, Rejected, row_to_portal
from models.refresh import FRESH, REFRESHED, RefreshEngine
from models.security import token_hash
from models.vault import ACTIVE, PORTAL_SUBJECT, Credential, TokenSet, Vault

log = logging.getLogger(__name__)

# Verdicts of the proof at the OAuth server.
STILL_INSTALLED = "installed"
GONE = "gone"
UNKNOWN = "unknown"  # a transient answer: ask again later
UNVERIFIABLE = "unverifiable"  # no working credential of ours to ask with
_STALE = "stale"  # the access token was refused: refresh it, then ask again

# Answers to our own credential that prove the app is no longer on the portal (spec §2.4: NOT_INSTALLED =
# "app removed"). invalid_grant is not among them: it says our refresh token is dead (spent by a copy of
# the app, a database restored from a backup, past its lifetime), which the app being installed allows.
GONE_ERRORS = {"NOT_INSTALLED", "APPLICATION_NOT_FOUND"}
DEAD_PAIR_ERRORS = {"invalid_grant"}


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
    """Outcome of an install or update: `error` is a stable code (words in routes/i18n/core.py)."""

    portal: Portal
    ok: bool
    bot_id: int | None = None
    error: str | None = None
    params: dict | None = None


@dataclass
class UninstallResult:
    """Outcome of an ONAPPUNINSTALL: `uninstalled` (proven), `pending` (asked again later) or `already`."""

    portal: Portal
    status: str


def _section(payload: dict, name: str) -> dict:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


class InstallService:
    """The install lifecycle of Bitrix24 portals."""

    def __init__(
        self,
        db: Database,
        portals_service: PortalService,
        vault: Vault,
        engine: RefreshEngine,
        oauth: Bitrix24OAuth,
        rest: Bitrix24Rest,
        settings: PortalSettings,
        audit: AuditLog,
        translate: Translate | None = None,
    ):
        self.db = db
        # The bot's profile text is shown in the portal: its words come from the route layer's catalog.
        self.translate = translate or (lambda key, lang=None, default=None, **params: default or "")
        self.portals = portals_service
        self.vault = vault
        self.engine = engine
        self.oauth = oauth
        self.rest = rest
        self.settings = settings
        self.audit = audit

    # ---- proving tokens ---------------------------------------------------------------------------

    def prove(self, access_token: str, *, member_id: str | None, domain: str | None) -> TrustedAuth:
        """Ask the OAuth server whose token this is; refuse foreign apps and mismatched portals."""
        if not access_token:
            raise Rejected("missing_token", 401)
        try:
            info = self.oauth.app_info(access_token)
        except OAuthError as exc:
            if not exc.permanent:
                raise Rejected("oauth_unavailable", 503) from exc
            raise Rejected("token_not_valid", 401) from exc
        if str(info.get("client_id") or "") != self.settings.client_id:
            raise Rejected("foreign_app", 403)
        install = _section(info, "install")
        trusted_member = str(install.get("member_id") or "")
        if not trusted_member or (member_id and member_id != trusted_member):
            raise Rejected("member_mismatch", 403)
        try:
            trusted_domain = self.portals.host(str(install.get("domain") or ""))
            endpoint = normalize_endpoint(
                str(install.get("client_endpoint") or f"https://{trusted_domain}/rest/"),
                allow_loopback=self.settings.allow_loopback,
            )
            if domain is not None and self.portals.host(domain) != trusted_domain:
                raise Rejected("domain_mismatch", 403)
        except InvalidHost as exc:
            log.info("portal host refused: %s", exc)
            raise Rejected("invalid_host", 400) from exc
        if endpoint_host(endpoint) != trusted_domain:
            raise Rejected("endpoint_mismatch", 403)
        user_id = forms.integer(info, "user_id")
        return TrustedAuth(
            trusted_member,
            trusted_domain,
            endpoint,
            user_id,
            str(info.get("scope") or ""),
            str(install.get("status") or info.get("status") or ""),
        )

    def is_admin(self, endpoint: str, access_token: str) -> bool:
        """Whether the token's user is a portal admin (`profile.ADMIN`)."""
        try:
            profile = self.rest.call(endpoint, access_token, "profile").result
        except Bitrix24Unavailable as exc:
            raise Rejected("portal_unavailable", 503) from exc
        except Bitrix24Error as exc:
            raise Rejected("portal_refused", 403, upstream=exc.code) from exc
        return isinstance(profile, dict) and profile.get("ADMIN") is True

    def server_endpoint(self, claimed: str) -> str:
        """Keep a claimed server_endpoint only when it names a known Bitrix24 OAuth server."""
        configured = f"{self.settings.oauth_url.rstrip('/')}/rest/"
        parts = urlsplit(claimed or "")
        if parts.scheme == "https" and parts.netloc in KNOWN_BITRIX_OAUTH_HOSTS:
            return f"https://{parts.netloc}/rest/"
        return configured

    # ---- install ------------------------------------------------------------------------------------

    def install_from_event(self, payload: dict) -> InstallResult:
        """ONAPPINSTALL: prove the tokens, record the portal and its credential, set the portal up."""
        auth, data = _section(payload, "auth"), _section(payload, "data")
        access_token = forms.text(auth, "access_token")
        refresh_token = forms.text(auth, "refresh_token")
        app_token = forms.text(auth, "application_token")
        if not app_token or not refresh_token:
            raise Rejected("missing_fields", 400)
        trusted = self.prove(
            access_token, member_id=forms.text(auth, "member_id") or None, domain=forms.text(auth, "domain") or None
        )
        return self._install(
            trusted,
            access_token,
            refresh_token,
            forms.integer(auth, "expires_in", 3600) or 3600,
            app_token,
            server_endpoint=forms.text(auth, "server_endpoint"),
            version=forms.text(data, "VERSION"),
            language=forms.text(data, "LANGUAGE_ID"),
        )

    def install_from_installer(self, fields: dict) -> InstallResult:
        """The installer page opened in the iframe (§1.2 POST)."""
        access_token = forms.text(fields, "AUTH_ID")
        refresh_token = forms.text(fields, "REFRESH_ID")
        app_token = forms.text(fields, "APPLICATION_TOKEN")
        if not access_token or not refresh_token or not app_token:
            raise Rejected("missing_fields", 400)
        trusted = self.prove(
            access_token, member_id=forms.text(fields, "member_id") or None, domain=forms.text(fields, "DOMAIN") or ""
        )
        return self._install(
            trusted,
            access_token,
            refresh_token,
            forms.integer(fields, "AUTH_EXPIRES", 3600) or 3600,
            app_token,
            server_endpoint=forms.text(fields, "SERVER_ENDPOINT"),
            version=None,
            language=forms.text(fields, "LANG"),
        )

    def _install(
        self,
        trusted: TrustedAuth,
        access_token: str,
        refresh_token: str,
        expires_in: int,
        app_token: str,
        *,
        server_endpoint: str,
        version: str | None,
        language: str | None,
    ) -> InstallResult:
        if not self.is_admin(trusted.client_endpoint, access_token):
            raise Rejected("not_admin", 403)
        ts = now()
        tokens = TokenSet(
            access_token, refresh_token, ts + max(60, min(expires_in, 86400)), ts + BITRIX_REFRESH_LIFETIME
        )
        values = {
            "domain": trusted.domain,
            "client_endpoint": trusted.client_endpoint,
            "server_endpoint": self.server_endpoint(server_endpoint),
            "application_token_hash": token_hash(app_token),
            "status": INSTALLED,
            "app_status": trusted.app_status[:4] or None,
            "scope": trusted.scope,
            "admin_user_id": trusted.user_id,
            "updated_at": ts,
            "uninstalled_at": None,
            "uninstall_pending_at": None,
            "uninstall_pending_clean": False,
        }
        if version:
            values["version"] = version[:32]
        if language:
            values["language"] = language[:8]
        previous = self.portals.get_by_member(trusted.member_id)
        if previous and previous.application_token_hash not in (None, values["application_token_hash"]):
            log.warning("portal %s re-installed with a new application token", trusted.member_id)
        with self.db.write() as conn:
            portal_id = self._upsert_portal(conn, trusted.member_id, ts, values)
            self.portals.clear_api_tokens(portal_id, conn=conn)  # a re-install starts without old API tokens
            self.vault.store(
                "bitrix24",
                trusted.member_id,
                PORTAL_SUBJECT,
                tokens,
                portal_id=portal_id,
                user_id=trusted.user_id,
                endpoint=values["server_endpoint"],
                reason="install",
                label=trusted.domain,
                conn=conn,
            )
            self.audit.record(
                f"bitrix24:user:{trusted.user_id}",
                "portal_installed",
                trusted.member_id,
                {"domain": trusted.domain, "version": version},
                conn=conn,
            )
        portal = self.portals.get(portal_id)
        log.info("portal %s (%s) installed", portal.member_id, portal.domain)
        return self.setup(portal)

    @staticmethod
    def _upsert_portal(conn, member_id: str, ts: int, values: dict) -> int:
        """Insert the portal or update its row, in one statement: the installer page and ONAPPINSTALL
        arrive together on a first install, and both must succeed and agree."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(portals)
            .values(member_id=member_id, installed_at=ts, **values)
            .on_conflict_do_update(index_elements=[portals.c.member_id], set_=values)
            .returning(portals.c.id)
        )
        return conn.execute(statement).scalar_one()

    def setup(self, portal: Portal) -> InstallResult:
        """Register the Open Lines bot, bind the CRM card tabs and the app events (idempotent at Bitrix24's side)."""
        base = self.settings.public_url.rstrip("/")
        position = self.translate("bot.work_position", (portal.language or "ru")[:2].lower(), default="")
        try:
            client = self.portals.client(portal)
            # Bot registration, its OnSessionFinish binding and the CRM card tabs in one batch; a tab the
            # portal refuses (no `placement` scope) is logged and the set-up goes on (models/crm).
            titles = {lang: self.translate("crm.tab_title", lang, default="") for lang in ("ru", "en")}
            title = titles.get((portal.language or "ru")[:2].lower()) or titles["ru"] or "Telemost"
            commands = openlines.setup_commands(portal, self.settings, work_position=position)
            commands.update(crm.setup_commands(base, title, titles))
            answer = client.batch(commands)
            bot = openlines.record_setup(self.db, portal, answer, self.settings.bot_code)
            crm.record_setup(portal.member_id, answer)
            for event in ("ONAPPUNINSTALL", "ONAPPUPDATE"):
                try:
                    client.call("event.bind", {"event": event, "handler": f"{base}/events"})
                except Bitrix24Error as exc:
                    if "already" not in exc.description.lower():
                        raise
        except Bitrix24Error as exc:
            log.warning("setup of portal %s failed: %s", portal.member_id, exc.code)
            return InstallResult(portal, ok=False, error="setup_failed", params={"upstream": exc.code})
        with self.db.write() as conn:
            conn.execute(
                sa.update(portals)
                .where(portals.c.id == portal.id)
                .values(setup_version=portal.version, updated_at=now())
            )
        return InstallResult(self.portals.get(portal.id), ok=True, bot_id=bot)

    # ---- events after install -----------------------------------------------------------------------

    def authenticate_event(self, payload: dict) -> Portal:
        """The portal of an event whose top-level auth[application_token] matches the stored one."""
        return self.portals.authenticate_event(payload)

    def _proven_admin(self, portal: Portal, access_token: str) -> TrustedAuth | None:
        """The token's facts when it is ours, of this portal, and its user is an admin; else None."""
        if not access_token:
            return None
        try:
            trusted = self.prove(access_token, member_id=portal.member_id, domain=portal.domain)
            return trusted if self.is_admin(trusted.client_endpoint, access_token) else None
        except Rejected:
            return None

    def handle_update(self, payload: dict) -> InstallResult:
        """ONAPPUPDATE: new version, fresh tokens, maybe a new application token; set-up once per version.

        The application token alone is not enough for anything (every employee sees it in the iframe
        POST): without an admin's token proven ours at the OAuth server nothing is written and set-up
        does not run. All network checks happen before the write transaction.
        """
        auth, data = _section(payload, "auth"), _section(payload, "data")
        access, refresh = forms.text(auth, "access_token"), forms.text(auth, "refresh_token")
        try:
            portal = self.authenticate_event(payload)
        except Rejected:
            # Bitrix24 may send an updated application token: checked against an admin's proven token below.
            portal = self.portals.get_by_member(forms.text(auth, "member_id"))
            if portal is None:
                raise
        if not portal.installed:
            raise Rejected("not_installed", 403)
        trusted = self._proven_admin(portal, access)
        if trusted is None:
            raise Rejected("not_admin", 403)
        ts = now()
        version = forms.text(data, "VERSION")[:32] or portal.version
        values: dict = {"updated_at": ts, "version": version}
        if forms.text(auth, "application_token"):
            values["application_token_hash"] = token_hash(forms.text(auth, "application_token"))
        with self.db.write() as conn:
            conn.execute(sa.update(portals).where(portals.c.id == portal.id).values(**values))
            if refresh:
                expires_in = max(60, min(forms.integer(auth, "expires_in", 3600) or 3600, 86400))
                tokens = TokenSet(access, refresh, ts + expires_in, ts + BITRIX_REFRESH_LIFETIME)
                self.vault.store(
                    "bitrix24",
                    portal.member_id,
                    PORTAL_SUBJECT,
                    tokens,
                    portal_id=portal.id,
                    user_id=trusted.user_id,
                    reason="update",
                    conn=conn,
                )
            # Claiming the version in the same statement that checks it: two deliveries of one update
            # cannot both run set-up.
            claimed = (
                version is not None
                and conn.execute(
                    sa.update(portals)
                    .where(
                        portals.c.id == portal.id,
                        sa.or_(portals.c.setup_version.is_(None), portals.c.setup_version != version),
                    )
                    .values(setup_version=version)
                ).rowcount
                == 1
            )
        updated = self.portals.get(portal.id)
        if version is not None and not claimed:
            log.info("portal %s: version %s is already set up", portal.member_id, version)
            return InstallResult(updated, ok=True, bot_id=updated.bot_id)
        result = self.setup(updated)
        if not result.ok and version is not None:
            with self.db.write() as conn:  # let the next delivery of this version try again
                conn.execute(
                    sa.update(portals)
                    .where(portals.c.id == portal.id, portals.c.setup_version == version)
                    .values(setup_version=None)
                )
        return result

    # ---- uninstall ------------------------------------------------------------------------------------

    def handle_uninstall(self, payload: dict) -> UninstallResult:
        """ONAPPUNINSTALL: honoured only on proof from the OAuth server; CLEAN=1 deletes the portal's data.

        The application token is the only check the event itself allows (spec §1.6), and employees can
        read it in the iframe POST: so we ask Bitrix24 with our own credential before touching anything.
        """
        portal = self.authenticate_event(payload)
        clean = forms.text(_section(payload, "data"), "CLEAN") == "1"
        if not portal.installed:
            return UninstallResult(portal, "already")
        return self.decide_uninstall(portal, clean, actor="event")

    def decide_uninstall(self, portal: Portal, clean: bool, *, actor: str) -> UninstallResult:
        """Uninstall on proof, record the event as pending on a transient answer, refuse otherwise."""
        if portal.uninstall_pending_at is not None:
            # The proof says the app is gone, never who ticked CLEAN: a later event (anyone with the
            # application token can post one) must not turn a pending "keep the data" into a wipe.
            clean = clean and portal.uninstall_pending_clean
        verdict = self.proof(portal)
        detail = {"clean": clean, "verdict": verdict}
        if verdict == GONE:
            done, won = self._uninstall(portal, clean, actor)
            return UninstallResult(done, "uninstalled" if won else "already")
        current = self.portals.get(portal.id)
        if current is None or not current.installed:
            # A peer (another worker or host re-checking the same event) uninstalled it while we asked,
            # revoking the credential we asked with: that is no refusal, and nothing is pending any more.
            return UninstallResult(current or portal, "already")
        if verdict == UNKNOWN:
            self._mark_pending(portal, clean)
            self.audit.record(actor, "uninstall_pending", portal.member_id, detail)
            log.warning("uninstall of portal %s pending: the OAuth server gave no definite answer", portal.member_id)
            return UninstallResult(self.portals.get(portal.id), "pending")
        self._clear_pending(portal)
        self.audit.record(actor, "uninstall_refused", portal.member_id, detail)
        log.warning("uninstall of portal %s refused: %s", portal.member_id, verdict)
        if verdict == STILL_INSTALLED:
            raise Rejected("still_installed", 403)
        raise Rejected("uninstall_unverifiable", 403)

    def proof(self, portal: Portal) -> str:
        """Ask Bitrix24, with our own credential, whether the app is still on the portal.

        Returns STILL_INSTALLED, GONE, UNKNOWN (transient: timeout, 5xx, 429/503, a peer holding the
        refresh lease) or UNVERIFIABLE (no working credential of ours, or its refresh token is dead).
        """
        cred = self._proof_credential(portal)
        if cred is None:
            return UNVERIFIABLE
        if cred.expires_at > now() + 30:
            verdict = self._ask(portal, cred.access_token)
            if verdict != _STALE:
                return verdict
        # Expired (an idle portal: cron keeps only tokens in use fresh) or refused: refresh it through
        # the keeper, which spends the refresh token under its lease and stores the new pair first.
        outcome = self.engine.refresh(cred.id, force=True, seen_version=cred.version, wait_for_peer=True)
        self.engine.flush()
        if outcome.result in (REFRESHED, FRESH):
            current = outcome.credential or self.vault.get(cred.id)
            if current is None or current.status != ACTIVE:
                return UNKNOWN
            verdict = self._ask(portal, current.access_token)
            return UNKNOWN if verdict == _STALE else verdict
        if outcome.error in GONE_ERRORS:
            return GONE
        if outcome.error in DEAD_PAIR_ERRORS:
            return UNVERIFIABLE
        return UNKNOWN

    def _proof_credential(self, portal: Portal) -> Credential | None:
        """The portal's own credential while it is active; never a user's.

        A user's pair comes from an iframe POST, where only the access token is proven ours: the refresh
        token beside it may belong to another portal (one where the app is gone, answering NOT_INSTALLED).
        """
        creds = [
            c
            for c in self.vault.for_portal(portal.id, "bitrix24")
            if c.status == ACTIVE and c.subject == PORTAL_SUBJECT
        ]
        return creds[0] if creds else None

    def _ask(self, portal: Portal, access_token: str) -> str:
        try:
            info = self.oauth.app_info(access_token)
        except OAuthError as exc:
            if exc.code in GONE_ERRORS:
                return GONE
            return _STALE if exc.permanent else UNKNOWN
        install = _section(info, "install")
        if (
            str(info.get("client_id") or "") != self.settings.client_id
            or str(install.get("member_id") or "") != portal.member_id
        ):
            return UNKNOWN
        installed = install.get("installed")
        if installed is True or str(installed).lower() in ("true", "1", "y"):
            return STILL_INSTALLED
        if installed is False or str(installed).lower() in ("false", "0", "n"):
            return GONE
        return UNKNOWN

    def _mark_pending(self, portal: Portal, clean: bool) -> None:
        # Several pending events: data is deleted only if every one of them asked for it.
        keep_clean = clean if portal.uninstall_pending_at is None else (clean and portal.uninstall_pending_clean)
        with self.db.write() as conn:
            conn.execute(
                sa.update(portals)
                .where(portals.c.id == portal.id)
                .values(uninstall_pending_at=portal.uninstall_pending_at or now(), uninstall_pending_clean=keep_clean)
            )

    def _clear_pending(self, portal: Portal) -> None:
        if portal.uninstall_pending_at is None:
            return
        with self.db.write() as conn:
            conn.execute(
                sa.update(portals)
                .where(portals.c.id == portal.id)
                .values(uninstall_pending_at=None, uninstall_pending_clean=False)
            )

    def _uninstall(self, portal: Portal, clean: bool, actor: str) -> tuple[Portal, bool]:
        """Uninstall once: (the portal now, True) for the caller that did it, False when a peer was first."""
        ts = now()
        values = {
            "status": UNINSTALLED,
            "uninstalled_at": ts,
            "updated_at": ts,
            "bot_id": None,
            "setup_version": None,
            "uninstall_pending_at": None,
            "uninstall_pending_clean": False,
        }
        with self.db.write() as conn:
            # Conditional on the status: two hosts' task runs (or two workers) holding the same proof
            # both get here; the first flips the row, the second finds nothing to do.
            won = (
                conn.execute(
                    sa.update(portals).where(portals.c.id == portal.id, portals.c.status == INSTALLED).values(**values)
                ).rowcount
                == 1
            )
            if won:
                self.vault.revoke_portal(portal.id, delete=clean, conn=conn)
                self.portals.clear_api_tokens(portal.id, conn=conn)
                if clean:  # the bot's dialogs, inbox and settings go with the portal's data
                    openlines.OpenLinesService.delete_data(conn, portal.id)
                self.audit.record(actor, "portal_uninstalled", portal.member_id, {"clean": clean}, conn=conn)
        if won:
            log.info("portal %s uninstalled (clean=%s)", portal.member_id, clean)
        return self.portals.get(portal.id), won

    def pending_uninstalls(self, limit: int = 100) -> list[Portal]:
        """Installed portals with an uninstall event still waiting for proof, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(portals)
                .where(portals.c.uninstall_pending_at.is_not(None), portals.c.status == INSTALLED)
                .order_by(portals.c.uninstall_pending_at)
                .limit(limit)
            ).all()
        return [row_to_portal(r) for r in rows]


def recheck_pending_uninstalls(install: InstallService, limit: int = 100) -> dict:
    """The task run's part: ask again about every pending uninstall; returns counts by outcome."""
    report = {"checked": 0, "uninstalled": 0, "refused": 0, "pending": 0}
    for portal in install.pending_uninstalls(limit):
        report["checked"] += 1
        try:
            result = install.decide_uninstall(portal, portal.uninstall_pending_clean, actor="task")
        except Rejected:
            report["refused"] += 1
            continue
        # `already`: a peer's run uninstalled it a moment ago; either way the portal is uninstalled.
        report["uninstalled" if result.status in ("uninstalled", "already") else "pending"] += 1
    return report
