"""Telling the right person that a credential needs re-authorisation.

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
        if cred.subject.startswith("user:"):
            # One employee's own pair: their next open of the app brings a fresh one; no admin alert.
            log.info("user credential %s needs a fresh open of the app by its user", cred.id)
            return
        if cred.portal_id is None:
            log.warning("credential %s needs re-authorisation and belongs to no portal: admin status shows it", cred.id)
            return
        portal = self.portals.get(cred.portal_id)
        if portal is None or not portal.installed or not portal.admin_user_id:
            return
        candidates = [
            c for c in self.portals.vault.for_portal(portal.id, "bitrix24") if c.status == ACTIVE and c.id != cred.id
        ]
        candidates.sort(key=lambda c: (c.user_id != portal.admin_user_id, c.subject != "portal"))
        lang = (portal.language or "ru")[:2].lower()  # the catalog falls back to English for other languages
        name = self.translate(f"provider.{cred.provider}", lang, default=cred.provider)
        message = self.translate(MESSAGE_KEY, lang, provider=name, error=error)
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
                log.info(
                    "told admin %s of portal %s that %s needs re-authorisation",
                    portal.admin_user_id,
                    portal.member_id,
                    cred.provider,
                )
                return
            except Bitrix24Error as exc:
                log.warning("notification through credential %s failed: %s", candidate.id, exc.code)
        log.warning("no working token on portal %s to notify its admin", portal.member_id)
