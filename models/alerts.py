"""Telling the right person that a credential needs re-authorisation.

For anything that belongs to a Bitrix24 portal, the portal's admin (the installing user) gets a
Bitrix24 notification (`im.notify.system.add`) sent with any still-working token of that portal.
The UI banner and the admin status read the credential's status from the vault; the refresh engine
logs the event and counts it in the metrics.
"""

from __future__ import annotations

import logging

from models.bitrix24 import Bitrix24Error
from models.vault import ACTIVE, Credential

log = logging.getLogger(__name__)

PROVIDER_NAMES = {"bitrix24": "Bitrix24", "yandex": "Яндекс Телемост", "amocrm": "amoCRM"}


class ReauthNotifier:
    """Callable given to the refresh engine."""

    def __init__(self, portals):
        self.portals = portals

    def __call__(self, cred: Credential, error: str) -> None:
        """Send the portal admin a Bitrix24 notification, through any working token of the portal."""
        if cred.subject.startswith("user:"):
            # One employee's own pair: their next open of the app brings a fresh one; no admin alert.
            log.info("user credential %s needs a fresh open of the app by its user", cred.id)
            return
        if cred.portal_id is None:
            log.warning("credential %s needs re-authorisation and belongs to no portal: admin status shows it",
                        cred.id)
            return
        portal = self.portals.get(cred.portal_id)
        if portal is None or not portal.installed or not portal.admin_user_id:
            return
        candidates = [c for c in self.portals.vault.for_portal(portal.id, "bitrix24")
                      if c.status == ACTIVE and c.id != cred.id]
        candidates.sort(key=lambda c: (c.user_id != portal.admin_user_id, c.subject != "portal"))
        name = PROVIDER_NAMES.get(cred.provider, cred.provider)
        message = (f"Приложение «Яндекс Телемост» потеряло доступ к {name} ({error}). "
                   "Откройте приложение, чтобы восстановить доступ, или переустановите его.")
        for candidate in candidates:
            try:
                self.portals.client(portal, candidate.id).call("im.notify.system.add", {
                    "USER_ID": portal.admin_user_id,
                    "MESSAGE": message,
                    "TAG": f"telemost_reauth_{cred.provider}",
                })
                log.info("told admin %s of portal %s that %s needs re-authorisation",
                         portal.admin_user_id, portal.member_id, cred.provider)
                return
            except Bitrix24Error as exc:
                log.warning("notification through credential %s failed: %s", candidate.id, exc.code)
        log.warning("no working token on portal %s to notify its admin", portal.member_id)
