"""What a portal sends when it opens the app in its iframe: the §1.2 POST and the b24jssdk init data."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..state import Portal, State
from ..tokens import Grant

LANG = "ru"


@dataclass
class Launch:
    """One opening of the app frame for one user."""

    action: str  # form action: app URL with DOMAIN/PROTOCOL/LANG/APP_SID in the query string
    body: dict[str, str]  # form body fields
    frame_name: str  # window.name read by b24jssdk: DOMAIN|PROTOCOL|APP_SID
    init: dict[str, Any]  # answer to the frame's getInitData
    grant: Grant


def frame_launch(
    state: State,
    portal: Portal,
    user_id: int,
    *,
    install: bool,
    first_run: bool = False,
    placement: str = "DEFAULT",
    placement_options: dict[str, Any] | None = None,
) -> Launch:
    """Mint fresh tokens for the user and build the iframe POST (installer page when install=True)."""
    grant = state.mint_bitrix(portal, user_id)
    user = portal.find_user(user_id)
    app_sid = secrets.token_hex(16)
    target = f"{state.app_url}/install" if install else f"{state.app_url}/"
    query = urlencode({"DOMAIN": portal.domain, "PROTOCOL": "0", "LANG": LANG, "APP_SID": app_sid})
    expires_in = max(0, int(grant.access_expires - time.time() + 0.5))
    options = placement_options or {}
    body = {
        "AUTH_ID": grant.access_token,
        "AUTH_EXPIRES": str(expires_in),
        "REFRESH_ID": grant.refresh_token,
        "SERVER_ENDPOINT": state.oauth_rest,
        "APPLICATION_TOKEN": portal.application_token or "",
        "APPLICATION_SCOPE": grant.scope,
        "member_id": portal.member_id,
        "status": "L",
        "PLACEMENT": placement,
        "PLACEMENT_OPTIONS": json.dumps(options, ensure_ascii=False, separators=(",", ":")),
    }
    init = {
        "AUTH_ID": grant.access_token,
        "REFRESH_ID": grant.refresh_token,
        "AUTH_EXPIRES": expires_in,
        "DOMAIN": portal.domain,
        "PROTOCOL": 0,
        "PATH": "/rest/",
        "LANG": LANG,
        "MEMBER_ID": portal.member_id,
        "IS_ADMIN": bool(user and user.admin),
        "APP_OPTIONS": {},
        "USER_OPTIONS": {},
        "PLACEMENT": placement,
        "PLACEMENT_OPTIONS": options,
        "INSTALL": install,
        "FIRST_RUN": first_run,
    }
    return Launch(f"{target}?{query}", body, f"{portal.domain}|0|{app_sid}", init, grant)
