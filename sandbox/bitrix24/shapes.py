"""Response shapes shared by the fake Bitrix24 OAuth server and the fake portals."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify

from ..state import Portal, State
from ..tokens import Grant

EXPIRED_TOKEN = ("expired_token", "The access token provided has expired.")
INVALID_TOKEN = ("invalid_token", "The access token provided is invalid.")


class RestError(Exception):
    """A Bitrix24 error answer: {"error", "error_description"} with an HTTP status."""

    def __init__(self, error: str, description: str = "", status: int = 400):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """JSON body of the error."""
        return {"error": self.error, "error_description": self.description}


@dataclass
class Page:
    """A list result with Bitrix24 paging (total / next)."""

    items: list[Any]
    total: int | None
    next: int | None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def rest_time(start: float, *, operating: bool = True) -> dict[str, Any]:
    """The `time` block of a REST answer (batch sub-results carry no operating keys)."""
    finish = time.time()
    block: dict[str, Any] = {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": finish - start,
        "date_start": _iso(start),
        "date_finish": _iso(finish),
    }
    if operating:
        block["operating_reset_at"] = int(start) + 600
        block["operating"] = 0
    return block


def error_response(error: str, description: str, status: int) -> Response:
    """Bitrix24 error JSON with a status."""
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def version_value(version: str) -> Any:
    """Versions are integers in Bitrix24 answers when they look like one."""
    return int(version) if version.isdigit() else version


def token_payload(state: State, grant: Grant, *, full: bool = True) -> dict[str, Any]:
    """OAuth token response; the code exchange answer lacks `expires` and `user_id` (per the docs)."""
    portal = state.portal(grant.subject["portal"])
    payload: dict[str, Any] = {
        "access_token": grant.access_token,
        "client_endpoint": portal.rest if portal else "",
        "domain": state.oauth_domain,
        "expires_in": max(0, int(grant.access_expires - time.time() + 0.5)),
        "member_id": grant.subject["member_id"],
        "refresh_token": grant.refresh_token,
        "scope": grant.scope,
        "server_endpoint": state.oauth_rest,
        "status": "L",
    }
    if full:
        payload["expires"] = int(grant.access_expires)
        payload["user_id"] = grant.subject["user_id"]
    return dict(sorted(payload.items()))


def oauth_app_info(state: State, grant: Grant, portal: Portal, access_token: str) -> dict[str, Any]:
    """Result of app.info on the OAuth server for the app owning the token."""
    ours = grant.client_id == state.our_client_id
    return {
        "client_id": grant.client_id,
        "scope": grant.scope,
        "expires": int(state.store.access_expires(access_token)),
        "user_id": grant.subject["user_id"],
        "install": {
            "installed": portal.installed if ours else True,
            "version": version_value(portal.version) if ours else 1,
            "status": "L",
            "scope": grant.scope,
            "domain": portal.domain,
            "uri": portal.base,
            "client_endpoint": portal.rest,
            "member_id": portal.member_id,
            "member_type": "PORTAL",
            "payment_expired": "Y" if ours and portal.payment_required else "N",
        },
    }
