"""Iframe and session verification: who is looking, on which portal.

An iframe open is trusted when the portal is installed, the domain matches, the application token
matches and the access token works for our app on that portal (`app.info` at the OAuth server) and
names a user on the portal (`user.current` + `profile` in one `batch`). The two questions go out at
once, so an open costs about one round trip; both answers are required.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from database import now
from models import forms
from models.bitrix24 import Bitrix24Error, Bitrix24Rest, Bitrix24Unavailable
from models.hosts import InvalidHost
from models.install import InstallService
from models.oauth import BITRIX_REFRESH_LIFETIME, OAuthError
from models.portal import Portal, PortalService, Rejected
from models.security import Identity, matches_hash
from models.vault import ACTIVE, PORTAL_SUBJECT, TokenSet, Vault, user_subject

log = logging.getLogger(__name__)


class IdentityService:
    """Verifies iframe POSTs and session renewals; keeps the user's fresh pair."""

    def __init__(
        self,
        portals_service: PortalService,
        install: InstallService,
        rest: Bitrix24Rest,
        vault: Vault,
        max_parallel: int = 8,
    ):
        self.portals = portals_service
        self.install = install
        self.rest = rest
        self.vault = vault
        # Threads start lazily, on the first open; one per concurrent open at most.
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="identity")

    def verify_frame(self, fields: dict) -> tuple[Identity, Portal]:
        """Verify the iframe POST and return who is looking; stores the user's fresh pair."""
        identity, portal, access_token = self._verify_user(
            forms.text(fields, "AUTH_ID"),
            forms.text(fields, "member_id"),
            forms.text(fields, "DOMAIN"),
            application_token=forms.text(fields, "APPLICATION_TOKEN"),
            require_app_token=True,
        )
        refresh_token = forms.text(fields, "REFRESH_ID")
        if refresh_token:
            self._store_user_pair(
                portal, identity, access_token, refresh_token, forms.integer(fields, "AUTH_EXPIRES", 3600) or 3600
            )
        return identity, portal

    def verify_code_flow(self, code: str, member_id: str, domain: str) -> tuple[Identity, Portal]:
        """Exchange an authorization code (the code flow's callback) and verify its user like an iframe open."""
        if not code or len(code) > 256:
            raise Rejected("missing_fields", 401)
        try:
            tokens = self.install.oauth.exchange_code(code)
        except OAuthError as exc:
            if not exc.permanent:
                raise Rejected("oauth_unavailable", 503) from exc
            raise Rejected("code_refused", 401) from exc
        # The rules of an iframe open, less the application token (a redirect carries none): installed
        # portal, same domain, a token of our app for that portal, a user the portal names.
        identity, portal, access_token = self._verify_user(
            tokens.access_token, member_id, domain, application_token="", require_app_token=False
        )
        if tokens.refresh_token:
            self._store_user_pair(
                portal, identity, access_token, tokens.refresh_token, max(60, tokens.expires_at - now()), "code"
            )
        return identity, portal

    def verify_session(self, access_token: str, member_id: str, domain: str) -> tuple[Identity, Portal]:
        """Verify a fresh Bitrix24 auth from the frame SDK (session renewal)."""
        identity, portal, _ = self._verify_user(
            access_token, member_id, domain, application_token="", require_app_token=False
        )
        return identity, portal

    def _verify_user(
        self, access_token: str, member_id: str, domain: str, *, application_token: str, require_app_token: bool
    ) -> tuple[Identity, Portal, str]:
        if not access_token or not member_id or not domain:
            raise Rejected("missing_fields", 401)
        try:
            host = self.portals.host(domain)
        except InvalidHost as exc:
            log.info("portal host refused: %s", exc)
            raise Rejected("invalid_host", 400) from exc
        portal = self.portals.get_by_member(member_id)
        if portal is None or not portal.installed:
            raise Rejected("not_installed", 401)
        if portal.domain != host:
            raise Rejected("domain_mismatch", 401)
        if require_app_token and not matches_hash(application_token, portal.application_token_hash):
            raise Rejected("bad_application_token", 401)
        # The token goes only to the stored endpoint of this portal, so asking the portal before the
        # OAuth server has answered leaks nothing; the OAuth answer is still checked first.
        proof = self._pool.submit(self.install.prove, access_token, member_id=portal.member_id, domain=portal.domain)
        try:
            answer = self.rest.call(
                portal.client_endpoint,
                access_token,
                "batch",
                {"halt": 0, "cmd": {"user": "user.current", "profile": "profile"}},
            ).result
            portal_error = None
        except Bitrix24Error as exc:
            answer, portal_error = None, exc
        proof.result()  # raises the OAuth server's refusal, which wins over the portal's
        if isinstance(portal_error, Bitrix24Unavailable):
            raise Rejected("portal_unavailable", 503) from portal_error
        if portal_error is not None:
            raise Rejected("portal_refused", 401, upstream=portal_error.code) from portal_error
        results = answer.get("result") if isinstance(answer, dict) else None
        user = results.get("user") if isinstance(results, dict) else None
        profile = results.get("profile") if isinstance(results, dict) else None
        if not isinstance(user, dict) or not str(user.get("ID", "")).isdigit():
            raise Rejected("portal_refused", 401, upstream="no_user")
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

    def _store_user_pair(
        self,
        portal: Portal,
        identity: Identity,
        access_token: str,
        refresh_token: str,
        expires_in: int,
        reason: str = "frame",
    ) -> None:
        ts = now()
        tokens = TokenSet(
            access_token, refresh_token, ts + max(60, min(expires_in, 86400)), ts + BITRIX_REFRESH_LIFETIME
        )
        portal_cred = self.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
        if identity.is_admin and (portal_cred is None or portal_cred.status != ACTIVE):
            # Self-healing: the portal credential is dead and an admin is here with a fresh pair.
            # The pair goes to the portal credential only (never to two rows: each row would spend it).
            self.vault.store(
                "bitrix24",
                portal.member_id,
                PORTAL_SUBJECT,
                tokens,
                portal_id=portal.id,
                user_id=identity.user_id,
                endpoint=portal.server_endpoint,
                reason="reauth",
                label=portal.domain,
            )
            log.info("portal %s credential restored from admin %s", portal.member_id, identity.user_id)
            return
        self.vault.store(
            "bitrix24",
            portal.member_id,
            user_subject(identity.user_id),
            tokens,
            portal_id=portal.id,
            user_id=identity.user_id,
            endpoint=portal.server_endpoint,
            reason=reason,
            label=identity.name,
            used=False,
        )
