"""Test data factories: `make_<thing>(services, **overrides)` writes one row through the models and returns it."""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from database import portals
from models.portal import INSTALLED, Portal
from models.security import token_hash
from models.vault import ACCOUNT_SUBJECT, PORTAL_SUBJECT, TokenSet


def make_token_set(
    *,
    access: str | None = None,
    refresh: str | None = "",
    expires_in: int = 3600,
    refresh_expires_in: int | None = 60 * 86400,
) -> TokenSet:
    """A pair with expiry times relative to now (`refresh=None`: a long-lived token without refresh)."""
    now = int(time.time())
    return TokenSet(
        access or f"acc-{secrets.token_hex(6)}",
        f"ref-{secrets.token_hex(6)}" if refresh == "" else refresh,
        now + expires_in,
        now + refresh_expires_in if refresh_expires_in is not None and refresh is not None else None,
    )


def make_portal(services, *, application_token: str | None = None, **overrides) -> Portal:
    """An installed portal row (no credential); `application_token` is stored hashed."""
    ts = int(time.time())
    member_id = overrides.pop("member_id", secrets.token_hex(16))
    domain = overrides.pop("domain", f"{member_id[:8]}.bitrix24.example")
    values = {
        "member_id": member_id,
        "domain": domain,
        "client_endpoint": f"https://{domain}/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "application_token_hash": token_hash(application_token or secrets.token_hex(16)),
        "status": INSTALLED,
        "admin_user_id": 1,
        "installed_at": ts,
        "updated_at": ts,
        **overrides,
    }
    with services.db.write() as conn:
        portal_id = conn.execute(sa.insert(portals).values(**values)).inserted_primary_key[0]
    return services.portals.get(portal_id)


def make_credential(
    services,
    provider: str = "bitrix24",
    account: str | None = None,
    *,
    subject: str | None = None,
    access: str | None = None,
    refresh: str | None = "",
    expires_in: int = 3600,
    refresh_expires_in: int | None = 60 * 86400,
    **store_options,
) -> int:
    """A credential stored through the vault (encrypted, version 1); returns its id.

    `store_options` go to `Vault.store` (portal_id, user_id, label, endpoint, reason, used).
    """
    subject = subject or (PORTAL_SUBJECT if provider == "bitrix24" else ACCOUNT_SUBJECT)
    tokens = make_token_set(
        access=access, refresh=refresh, expires_in=expires_in, refresh_expires_in=refresh_expires_in
    )
    return services.vault.store(provider, account or secrets.token_hex(8), subject, tokens, **store_options)


# --- api (issue 11 §4: the OpenAPI fuzzing seed) ---------------------------------------------------------


def make_dialog(services, portal_id: int, chat_id: int, *, messages: int = 2, **overrides) -> int:
    """An Open Lines dialog with a few client messages (as the bot's intake stores them); returns its row id."""
    from database import dialog_messages, dialogs

    ts = int(time.time())
    values = {
        "portal_id": portal_id,
        "chat_id": chat_id,
        "dialog_id": f"chat{chat_id}",
        "line_id": "1",
        "connector": "telegrambot",
        "client_id": "42",
        "client_name": "Клиент",
        "first_message": "Здравствуйте",
        "status": "transferred",
        "created_at": ts,
        "updated_at": ts,
        **overrides,
    }
    with services.db.write() as conn:
        dialog_pk = conn.execute(sa.insert(dialogs).values(**values)).inserted_primary_key[0]
        for n in range(messages):
            conn.execute(
                sa.insert(dialog_messages).values(
                    dialog_pk=dialog_pk,
                    message_id=str(n + 1),
                    author_kind="client",
                    author_id="42",
                    text=f"message {n + 1}",
                    sent_at=ts + n,
                    source="event",
                )
            )
    return dialog_pk
