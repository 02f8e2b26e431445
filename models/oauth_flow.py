"""The OAuth code flow (/auth/bitrix24): signed, single-use, browser-bound `state`, and the web session.

The app opened outside the portal sends the browser to the portal's consent page with a `state`; the
callback is honoured once, only in the browser that started it (a nonce cookie), and only for the
portal the flow was started for. The state is signed (a forged or truncated one is refused before the
database is asked) and its row is spent with one conditional UPDATE, so a replay loses whichever
worker it reaches. After the callback the browser keeps a first-party session cookie: a signed token
of its own issuer, so a bearer token of the iframe UI is never accepted as a cookie or the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

import sqlalchemy as sa

from database import Database, now, oauth_states, portals
from models.errors import ServiceError
from models.hosts import InvalidHost
from models.portal import Portal, PortalService, row_to_portal
from models.security import Identity, InvalidSession, SessionSigner, new_secret, token_hash

STATE_TTL_SECONDS = 600  # start → callback: logging in at the portal and consenting
WEB_SESSION_TTL_SECONDS = 8 * 3600  # a working day in a normal tab; the bearer token itself lives 15 min
PURGE_AFTER_SECONDS = 86400
_c = oauth_states.c


class CodeFlowRefused(ServiceError):
    """A code-flow start, callback or cookie session that cannot be honoured (stable code, no words)."""


class CodeFlow:
    """States of the code flow and the signed web-session cookie."""

    def __init__(self, db: Database, portals_service: PortalService, key: str, issuer: str):
        self.db = db
        self.portals = portals_service
        self._key = hashlib.sha256(b"bitrix24-oauth-state\0" + key.encode()).digest()
        self.web = SessionSigner(key, WEB_SESSION_TTL_SECONDS, issuer=f"{issuer}#web")

    # ---- portal -----------------------------------------------------------------------------------

    def portal_for_domain(self, raw_domain: str) -> Portal:
        """The installed portal a user typed or linked (raises CodeFlowRefused)."""
        if not raw_domain or len(raw_domain) > 255:
            raise CodeFlowRefused("portal_domain_required", status=400)
        try:
            host = self.portals.host(raw_domain)
        except InvalidHost:
            raise CodeFlowRefused("invalid_host", status=400) from None
        with self.db.read() as conn:
            row = conn.execute(sa.select(portals).where(portals.c.domain == host).order_by(portals.c.id.desc())).first()
        if row is None or not row_to_portal(row).installed:
            raise CodeFlowRefused("app_not_on_portal", status=404, domain=host)
        return row_to_portal(row)

    @staticmethod
    def authorize_url(portal: Portal, client_id: str, state: str) -> str:
        """The portal's consent page (spec §2.1: no redirect_uri, the app card's one is used)."""
        # The stored, verified REST endpoint names the portal's origin (https, or http for the sandbox).
        base = portal.client_endpoint.split("/rest/", 1)[0].rstrip("/")
        return f"{base}/oauth/authorize/?" + urlencode({"client_id": client_id, "state": state})

    # ---- state ------------------------------------------------------------------------------------

    def _sign(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def start(self, portal: Portal, nonce: str) -> str:
        """A new signed state for `portal`, bound to the browser holding `nonce`."""
        raw = new_secret(24)
        state = f"{raw}.{self._sign(raw)}"
        ts = now()
        with self.db.write() as conn:
            conn.execute(sa.delete(oauth_states).where(_c.expires_at < ts - PURGE_AFTER_SECONDS))
            conn.execute(
                sa.insert(oauth_states).values(
                    state_hash=token_hash(state),
                    nonce_hash=token_hash(nonce),
                    portal_id=portal.id,
                    created_at=ts,
                    expires_at=ts + STATE_TTL_SECONDS,
                )
            )
        return state

    def spend(self, state: str, nonce: str | None) -> int:
        """Spend a state once in the browser that started it; returns the portal id it was issued for."""
        raw, _, signature = (state or "").partition(".")
        if not raw or len(state) > 200 or not hmac.compare_digest(signature.encode(), self._sign(raw).encode()):
            raise CodeFlowRefused("state_invalid", status=400)
        ts = now()
        where = [_c.state_hash == token_hash(state), _c.used_at.is_(None), _c.expires_at > ts]
        # Without the cookie nothing matches: another browser cannot spend (or burn) the state.
        where.append(_c.nonce_hash == token_hash(nonce or "") if nonce else sa.false())
        with self.db.write() as conn:
            changed = conn.execute(sa.update(oauth_states).where(*where).values(used_at=ts)).rowcount
            row = conn.execute(sa.select(oauth_states).where(_c.state_hash == token_hash(state))).first()
        if changed == 1:
            return row.portal_id
        if row is None:
            raise CodeFlowRefused("state_invalid", status=400)
        if row.used_at is not None:
            raise CodeFlowRefused("state_used", status=400)
        if row.expires_at <= ts:
            raise CodeFlowRefused("state_expired", status=400)
        raise CodeFlowRefused("state_other_browser", status=400)

    # ---- web session ------------------------------------------------------------------------------

    def issue_web_session(self, identity: Identity) -> tuple[str, int]:
        """The value of the first-party session cookie and its expiry."""
        return self.web.issue(identity)

    def web_identity(self, cookie: str | None) -> tuple[Identity, Portal]:
        """Who the session cookie names, while their portal still has the app (raises CodeFlowRefused)."""
        if not cookie or len(cookie) > 4096:
            raise CodeFlowRefused("no_web_session", status=401)
        try:
            identity = self.web.verify(cookie)
        except InvalidSession:
            raise CodeFlowRefused("no_web_session", status=401) from None
        portal = self.portals.session_portal(identity.portal_id)
        if portal is None or portal.member_id != identity.member_id:
            raise CodeFlowRefused("not_installed", status=401)
        return identity, portal
