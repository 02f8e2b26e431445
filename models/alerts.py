"""Telling the right person that a credential needs re-authorisation, and that it works again.

For anything that belongs to a Bitrix24 portal, the portal's admin (the installing user) gets a
Bitrix24 notification (`im.notify.system.add`) sent with any still-working token of that portal.
The UI banner and the admin status read the credential's status from the vault; the refresh engine
logs the event and counts it in the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from models.bitrix24 import Bitrix24Error
from models.vault import ACTIVE, Credential

log = logging.getLogger(__name__)

# translate(key, lang, default=None, **params) -> words; the route layer's catalog (routes/i18n) is
# handed in at wiring time, so models keep no words of their own.
Translate = Callable[..., str]
MESSAGE_KEY = "notify.needs_reauth"
RESTORED_KEY = "notify.restored"


def _codes_only(key: str, lang: str | None = None, default: str | None = None, **params) -> str:
    """Stand-in translator without a catalog: the key and its params, still readable by an admin."""
    if default is not None:
        return default
    return f"{key}: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


class ReauthNotifier:
    """Callable given to the refresh engine."""

    def __init__(self, portals, translate: Translate | None = None):
        self.portals = portals
        self.translate = translate or _codes_only

    def __call__(self, cred: Credential, error: str) -> None:
        """Send the portal admin a Bitrix24 notification, through any working token of the portal."""
        portal = self._admin_portal(cred, "needs re-authorisation")
        if portal is None:
            return
        lang = (portal.language or "ru")[:2].lower()  # the catalog falls back to English for other languages
        name = self.translate(f"provider.{cred.provider}", lang, default=cred.provider)
        message = self.translate(MESSAGE_KEY, lang, provider=name, error=error)
        if self._send(portal, cred, message, through_itself=False):
            log.info(
                "told admin %s of portal %s that %s needs re-authorisation",
                portal.admin_user_id,
                portal.member_id,
                cred.provider,
            )

    def restored(self, cred: Credential) -> None:
        """Tell the portal admin that a credential which needed re-authorisation works again.

        The notice carries the same TAG as the needs-reauth one, so Bitrix24 replaces that notification
        instead of leaving a stale alarm beside the good news.
        """
        portal = self._admin_portal(cred, "was restored")
        if portal is None:
            return
        lang = (portal.language or "ru")[:2].lower()
        name = self.translate(f"provider.{cred.provider}", lang, default=cred.provider)
        message = self.translate(RESTORED_KEY, lang, provider=name)
        if self._send(portal, cred, message, through_itself=True):
            log.info(
                "told admin %s of portal %s that %s works again", portal.admin_user_id, portal.member_id, cred.provider
            )

    def _admin_portal(self, cred: Credential, what: str):
        """The installed portal whose admin hears about this credential, or None when nobody is to be told."""
        if cred.subject.startswith("user:"):
            # One employee's own pair: their next open of the app brings a fresh one; no admin alert.
            log.info("user credential %s %s: its user is not notified", cred.id, what)
            return None
        if cred.portal_id is None:
            log.warning("credential %s %s and belongs to no portal: admin status shows it", cred.id, what)
            return None
        portal = self.portals.get(cred.portal_id)
        if portal is None or not portal.installed or not portal.admin_user_id:
            return None
        return portal

    def _send(self, portal, cred: Credential, message: str, *, through_itself: bool) -> bool:
        """im.notify.system.add to the admin through the first working Bitrix24 token of the portal."""
        candidates = [
            c
            for c in self.portals.vault.for_portal(portal.id, "bitrix24")
            if c.status == ACTIVE and (through_itself or c.id != cred.id)
        ]
        candidates.sort(key=lambda c: (c.user_id != portal.admin_user_id, c.subject != "portal"))
        for candidate in candidates:
            try:
                self.portals.client(portal, candidate.id).call(
                    "im.notify.system.add",
                    {
                        "USER_ID": portal.admin_user_id,
                        "MESSAGE": message,
                        "TAG": f"telemost_reauth_{cred.provider}",
                    },
                )
                return True
            except Bitrix24Error as exc:
                log.warning("notification through credential %s failed: %s", candidate.id, exc.code)
        log.warning("no working token on portal %s to notify its admin", portal.member_id)
        return False
