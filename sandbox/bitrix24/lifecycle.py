"""App lifecycle on a fake portal (install, installFinish, update, uninstall) and events sent to the app.

Events are form posts with PHP bracket keys and string values, delivered once with no retry (spec §5.5);
the app's answer is recorded. No lock is held while posting: the app may call the portal back.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import requests

from ..state import NotFoundError, Portal, SandboxError, State
from ..tokens import Grant
from .forms import flatten
from .launch import LANG, frame_launch

BODY_LIMIT = 2000
# Which registration field of an imbot.register call receives which bot event.
BOT_EVENT_HANDLERS = {
    "ONIMBOTMESSAGEADD": "EVENT_MESSAGE_ADD",
    "ONIMBOTJOINCHAT": "EVENT_WELCOME_MESSAGE",
    "ONIMBOTDELETE": "EVENT_BOT_DELETE",
    "ONIMBOTMESSAGEUPDATE": "EVENT_MESSAGE_UPDATE",
    "ONIMBOTMESSAGEDELETE": "EVENT_MESSAGE_DELETE",
}


def deliver(
    state: State,
    portal: Portal,
    event: str,
    url: str,
    pairs: list[tuple[str, str]],
    handler_id: Any = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """POST one form to the app (single attempt) and record the outcome."""
    started = time.time()
    outcome: dict[str, Any] = {
        "event": event,
        "url": url,
        "handler_id": handler_id,
        "status": None,
        "body": "",
        "error": None,
        "time": started,
    }
    try:
        with requests.post(
            url,
            data=pairs,
            timeout=(3.0, float(state.config["event_timeout"] if timeout is None else timeout)),
            allow_redirects=False,
        ) as response:
            outcome["status"] = response.status_code
            outcome["body"] = response.text[:BODY_LIMIT]
    except requests.RequestException as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    outcome["duration"] = time.time() - started
    with state.lock:
        portal.record(portal.deliveries, {k: v for k, v in outcome.items() if k != "body"})
    return outcome


def _install_auth(state: State, portal: Portal, grant: Grant) -> list[tuple[str, str]]:
    """auth[...] of ONAPPINSTALL/ONAPPUPDATE, keys exactly as in the documented example."""
    expires_in = max(0, int(grant.access_expires - time.time() + 0.5))
    return [
        ("auth[domain]", portal.domain),
        ("auth[scope]", grant.scope),
        ("auth[access_token]", grant.access_token),
        ("auth[refresh_token]", grant.refresh_token),
        ("auth[expires_in]", str(expires_in)),
        ("auth[server_endpoint]", state.oauth_rest),
        ("auth[status]", "L"),
        ("auth[client_endpoint]", portal.rest),
        ("auth[member_id]", portal.member_id),
        ("auth[application_token]", portal.application_token or ""),
    ]


def token_block(state: State, portal: Portal, grant: Grant) -> dict[str, str]:
    """Full auth block of ordinary events (§5.1), every value a string."""
    expires_in = max(0, int(grant.access_expires - time.time() + 0.5))
    return {
        "access_token": grant.access_token,
        "expires": str(int(grant.access_expires)),
        "expires_in": str(expires_in),
        "scope": grant.scope,
        "domain": portal.domain,
        "server_endpoint": state.oauth_rest,
        "status": "L",
        "client_endpoint": portal.rest,
        "member_id": portal.member_id,
        "user_id": str(grant.subject["user_id"]),
        "refresh_token": grant.refresh_token,
        "application_token": portal.application_token or "",
    }


def _bare_auth(state: State, portal: Portal) -> list[tuple[str, str]]:
    return [
        ("auth[domain]", portal.domain),
        ("auth[server_endpoint]", state.oauth_rest),
        ("auth[client_endpoint]", portal.rest),
        ("auth[member_id]", portal.member_id),
        ("auth[application_token]", portal.application_token or ""),
    ]


def _admin(portal: Portal, user_id: Any) -> int:
    user = portal.find_user(user_id if user_id is not None else 1)
    if user is None or not user.admin:
        raise SandboxError("the installing user must be a portal administrator")
    return user.id


def _ts() -> tuple[str, str]:
    return ("ts", str(int(time.time())))


def _bound(portal: Portal, state: State, event: str) -> list[dict[str, Any]]:
    return [dict(h) for h in portal.handlers if h["client_id"] == state.our_client_id and h["event"] == event]


def _answer(portal: Portal, deliveries: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    first = deliveries[0] if deliveries else {}
    return {
        "status": first.get("status"),
        "body": first.get("body", ""),
        "error": first.get("error"),
        "deliveries": deliveries,
        "portal": portal.details(),
        **extra,
    }


# --- lifecycle -----------------------------------------------------------------------------------
def install(state: State, portal: Portal, mode: str, user_id: Any = None) -> dict[str, Any]:
    """Install the app: event mode posts ONAPPINSTALL, installer mode posts the installer page form."""
    if mode not in ("event", "installer"):
        raise SandboxError('mode must be "event" or "installer"')
    with state.lock:
        admin_id = _admin(portal, user_id)
        portal.installed = True
        portal.install_finished = mode == "event"  # UI-less install completes on its own (§1.4)
        portal.uninstalled = False
        portal.application_token = secrets.token_hex(16)
    if mode == "installer":
        launch = frame_launch(state, portal, admin_id, install=True)
        delivery = deliver(state, portal, "INSTALLER", launch.action, list(launch.body.items()))
        return _answer(portal, [delivery])
    grant = state.mint_bitrix(portal, admin_id)
    pairs = [
        ("event", "ONAPPINSTALL"),
        ("data[VERSION]", portal.version),
        ("data[ACTIVE]", "Y"),
        ("data[INSTALLED]", "Y"),
        ("data[LANGUAGE_ID]", LANG),
        _ts(),
        *_install_auth(state, portal, grant),
    ]
    return _answer(portal, [deliver(state, portal, "ONAPPINSTALL", f"{state.app_url}/install", pairs)])


def install_finish(state: State, portal: Portal, user_id: Any = 1) -> tuple[bool, str]:
    """installFinish from the admin's frame: honoured only for an admin while the app is installed."""
    with state.lock:
        user = portal.find_user(user_id)
        if not portal.installed:
            return False, "application is not installed"
        if user is None or not user.admin:
            return False, "installFinish is only honoured for an administrator"
        portal.install_finished = True
        return True, "ok"


def update(state: State, portal: Portal, version: str, user_id: Any = None) -> dict[str, Any]:
    """New version: ONAPPUPDATE with fresh tokens and a new application_token."""
    with state.lock:
        if not portal.installed:
            raise SandboxError("application is not installed")
        admin_id = _admin(portal, user_id)
        portal.previous_version, portal.version = portal.version, str(version)
        portal.application_token = secrets.token_hex(16)
        targets = _bound(portal, state, "ONAPPUPDATE") if portal.install_finished else []
    grant = state.mint_bitrix(portal, admin_id)
    data = [
        ("data[VERSION]", portal.version),
        ("data[PREVIOUS_VERSION]", portal.previous_version or ""),
        ("data[LANGUAGE_ID]", LANG),
        _ts(),
        *_install_auth(state, portal, grant),
    ]
    if not targets:
        pairs = [("event", "ONAPPUPDATE"), *data]
        return _answer(portal, [deliver(state, portal, "ONAPPUPDATE", f"{state.app_url}/install", pairs)])
    deliveries = [
        deliver(
            state,
            portal,
            "ONAPPUPDATE",
            h["handler"],
            [("event", "ONAPPUPDATE"), ("event_handler_id", str(h["id"])), *data],
            h["id"],
        )
        for h in targets
    ]
    return _answer(portal, deliveries)


def uninstall(state: State, portal: Portal, clean: bool) -> dict[str, Any]:
    """Remove the app: tokens revoked, handlers/bots/placements dropped, then ONAPPUNINSTALL is sent."""
    with state.lock:
        bound = _bound(portal, state, "ONAPPUNINSTALL")
        targets = bound if portal.install_finished else []
        ours = state.our_client_id
        portal.installed = False
        portal.install_finished = False
        portal.uninstalled = True
        portal.handlers[:] = [h for h in portal.handlers if h["client_id"] != ours]
        portal.placements[:] = [p for p in portal.placements if p["client_id"] != ours]
        for bot_id in [b for b, bot in portal.bots.items() if bot["client_id"] == ours]:
            del portal.bots[bot_id]
        portal.opened_by.clear()
    # The access is already revoked when the event arrives (§1.5): revoke first, then tell the app.
    revoked = state.store.revoke_where(
        lambda g: g.provider == "bitrix24" and g.client_id == ours and g.subject.get("portal") == portal.name
    )
    data = [
        ("data[LANGUAGE_ID]", LANG),
        ("data[CLEAN]", "1" if clean else "0"),
        _ts(),
        *_bare_auth(state, portal),
    ]
    if targets:
        deliveries = [
            deliver(
                state,
                portal,
                "ONAPPUNINSTALL",
                h["handler"],
                [("event", "ONAPPUNINSTALL"), ("event_handler_id", str(h["id"])), *data],
                h["id"],
            )
            for h in targets
        ]
    elif bound:
        deliveries = []  # bound before installFinish: Bitrix24 would not deliver (§1.3)
    else:
        pairs = [("event", "ONAPPUNINSTALL"), *data]
        deliveries = [deliver(state, portal, "ONAPPUNINSTALL", f"{state.app_url}/events", pairs)]
    return _answer(portal, deliveries, revoked=revoked)


# --- arbitrary events ----------------------------------------------------------------------------
def bot_block(state: State, portal: Portal, bot: dict[str, Any]) -> dict[str, Any]:
    """data[BOT][<id>] of ONIMBOT* events: the bot's own tokens, again under AUTH, plus BOT_ID/BOT_CODE."""
    grant = state.mint_bitrix(portal, bot["id"])
    auth = token_block(state, portal, grant)
    auth["client_id"] = state.our_client_id
    return {**auth, "AUTH": dict(auth), "BOT_ID": str(bot["id"]), "BOT_CODE": bot["code"]}


def send_event(
    state: State,
    portal: Portal,
    event: str,
    fields: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    user_id: Any = None,
    with_auth: bool = True,
    bot_id: Any = None,
) -> dict[str, Any]:
    """Send any event to the handler(s) bound for it (ONIMBOT*: the bots' registered handlers)."""
    event = event.upper()
    fields = dict(fields or {})
    with state.lock:
        if not portal.install_finished:
            return _answer(portal, [], skipped="install not finished: Bitrix24 delivers no events yet")
        if event in BOT_EVENT_HANDLERS:
            key = BOT_EVENT_HANDLERS[event]
            bots = [
                b
                for b in portal.bots.values()
                if b["client_id"] == state.our_client_id
                and (bot_id is None or str(b["id"]) == str(bot_id))
                and b["handlers"].get(key)
            ]
            targets = [
                {"id": b["id"], "handler": b["handlers"][key], "auth_type": "0", "bot": dict(b)} for b in bots[:1]
            ]
        else:
            targets = _bound(portal, state, event)
    if not targets:
        raise NotFoundError(f"no handler bound for {event}")
    deliveries = []
    for target in targets:
        acting = target["auth_type"] if target["auth_type"] not in ("", "0") else (user_id or 1)
        data = dict(fields)
        bot = target.get("bot")
        if bot is not None and "BOT" not in data:
            data["BOT"] = {str(bot["id"]): bot_block(state, portal, bot)}
        pairs = [("event", event), ("event_handler_id", str(target["id"])), *flatten({"data": data}), _ts()]
        if with_auth:
            grant = state.mint_bitrix(portal, int(acting))
            pairs += flatten({"auth": token_block(state, portal, grant)})
        else:
            pairs += _bare_auth(state, portal)
        form = dict(pairs)
        form.update(flatten(extra or {}))  # raw bracket keys from the caller win (forging tests)
        pairs = list(form.items())
        deliveries.append(deliver(state, portal, event, target["handler"], pairs, target["id"]))
    return _answer(portal, deliveries)
