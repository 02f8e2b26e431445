"""Control API (/_sandbox/...): portals, lifecycle, tokens, counters, knobs and faults. JSON in, JSON out."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from .bitrix24 import lifecycle, openlines
from .bitrix24.methods_calendar import row as calendar_row
from .state import DEFAULT_CONFIG, NotFoundError, Portal, SandboxError, State

bp = Blueprint("control", __name__, url_prefix="/_sandbox")
MAX_MINT = 100_000
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _state() -> State:
    return current_app.extensions["sandbox"]


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _fail(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def _portal_or_404(name: str) -> Portal:
    portal = _state().portal(name)
    if portal is None:
        raise NotFoundError(f"unknown portal {name}")
    return portal


@bp.errorhandler(NotFoundError)
def _not_found(exc: NotFoundError) -> tuple[Response, int]:
    return _fail(str(exc), 404)


@bp.errorhandler(openlines.ConflictError)
def _conflict(exc: openlines.ConflictError) -> tuple[Response, int]:
    return _fail(str(exc), 409)


@bp.errorhandler(SandboxError)
def _bad_request(exc: SandboxError) -> tuple[Response, int]:
    return _fail(str(exc), 400)


# --- service -------------------------------------------------------------------------------------
@bp.get("/health")
def health() -> Response:
    """Liveness and a few numbers."""
    state = _state()
    with state.lock:
        return jsonify({"ok": True, "portals": len(state.portals), "grants": len(state.store.grants)})


def _coerce(default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int | float):
        number = float(value)  # fractions are fine (sub-second TTLs in tests)
        return int(number) if number.is_integer() else number
    return str(value)


@bp.route("/config", methods=["GET", "POST"])
def config() -> Response | tuple[Response, int]:
    """Read or change knobs (unknown keys are refused)."""
    state = _state()
    if request.method == "POST":
        changes = _body()
        unknown = sorted(set(changes) - set(DEFAULT_CONFIG))
        if unknown:
            return _fail(f"unknown config keys: {', '.join(unknown)}")
        try:
            parsed = {key: _coerce(DEFAULT_CONFIG[key], value) for key, value in changes.items()}
        except (TypeError, ValueError) as exc:
            return _fail(f"bad config value: {exc}")
        with state.lock:
            state.config.update(parsed)
    with state.lock:
        return jsonify(dict(state.config))


# --- portals -------------------------------------------------------------------------------------
@bp.route("/portals", methods=["GET", "POST"])
def portals() -> Response | tuple[Response, int]:
    """List portals, or create one on a new port."""
    state = _state()
    if request.method == "GET":
        with state.lock:
            return jsonify([p.details() for p in state.portals.values()])
    name = _body().get("name") or state.next_portal_name()
    if not _NAME_RE.match(str(name)):
        return _fail("name may only contain letters, digits, '.', '_' and '-'")
    if state.portal(str(name)) is not None:
        return _fail(f"portal {name} already exists", 409)
    if state.spawn_portal is None:  # wired by the server runner; absent only in a bare State
        return _fail("portal creation is not available", 500)
    portal = state.spawn_portal(str(name))
    return jsonify(portal.summary()), 201


@bp.get("/portals/<name>")
def portal_details(name: str) -> Response:
    """Identity, install state and application_token of one portal."""
    portal = _portal_or_404(name)
    with _state().lock:
        return jsonify(portal.details())


@bp.post("/portals/<name>/install")
def install(name: str) -> Response:
    """Install the app in event mode (ONAPPINSTALL) or installer mode (installer page POST)."""
    body = _body()
    portal = _portal_or_404(name)
    return jsonify(lifecycle.install(_state(), portal, str(body.get("mode", "event")), body.get("user_id")))


@bp.post("/portals/<name>/install-finish")
def install_finish(name: str) -> Response | tuple[Response, int]:
    """As if the admin's installer frame called installFinish."""
    portal = _portal_or_404(name)
    ok, reason = lifecycle.install_finish(_state(), portal, _body().get("user_id", 1))
    if not ok:
        return jsonify({"ok": False, "error": reason}), 409
    return jsonify({"ok": True, "portal": portal.details()})


@bp.post("/portals/<name>/update")
def update(name: str) -> Response:
    """New app version: ONAPPUPDATE to the bound handler(s) or {app_url}/install."""
    body = _body()
    portal = _portal_or_404(name)
    return jsonify(lifecycle.update(_state(), portal, str(body.get("version", "2")), body.get("user_id")))


@bp.post("/portals/<name>/uninstall")
def uninstall(name: str) -> Response:
    """Remove the app: revoke tokens, drop handlers/bots/placements, send ONAPPUNINSTALL."""
    portal = _portal_or_404(name)
    return jsonify(lifecycle.uninstall(_state(), portal, bool(_body().get("clean", False))))


@bp.get("/portals/<name>/open")
def open_page(name: str) -> Response:
    """Redirect to the portal page showing the app to user_id (in a CRM card's tab with ?placement=&id=)."""
    portal = _portal_or_404(name)
    query = {"user_id": request.args.get("user_id", "1")}
    if request.args.get("placement"):
        query.update(placement=request.args["placement"], id=request.args.get("id", ""))
    return redirect(f"{portal.base}/app/?{urlencode(query)}", code=302)


@bp.get("/portals/<name>/calendar")
def calendar_page(name: str) -> Response:
    """Redirect to the portal's «Календарь» page (calendar entries and notifications the app made)."""
    portal = _portal_or_404(name)
    user_id = request.args.get("user_id", "1")
    return redirect(f"{portal.base}/calendar/?user_id={user_id}", code=302)


@bp.route("/portals/<name>/calls", methods=["GET", "DELETE"])
def calls(name: str) -> Response:
    """REST calls the app made (secrets stripped); DELETE clears the log."""
    portal = _portal_or_404(name)
    with _state().lock:
        if request.method == "DELETE":
            cleared = len(portal.calls)
            portal.calls.clear()
            return jsonify({"cleared": cleared})
        return jsonify([dict(c) for c in portal.calls])


@bp.get("/portals/<name>/state")
def portal_state(name: str) -> Response:
    """Everything the app changed on the portal."""
    portal = _portal_or_404(name)
    with _state().lock:
        return jsonify(
            {
                "portal": portal.details(),
                "bots": [
                    {
                        "id": b["id"],
                        "code": b["code"],
                        "type": b["type"],
                        "openline": b["openline"],
                        "handlers": b["handlers"],
                        "properties": b["properties"],
                        "client_id": b["client_id"],
                    }
                    for b in portal.bots.values()
                ],
                "events": [
                    {
                        "id": h["id"],
                        "event": h["event"],
                        "handler": h["handler"],
                        "auth_type": h["auth_type"],
                        "offline": h["offline"],
                        "client_id": h["client_id"],
                    }
                    for h in portal.handlers
                ],
                "placements": [dict(p) for p in portal.placements],
                "notifications": [dict(n) for n in portal.notifications],
                "messages": [dict(m) for m in portal.bot_messages],
                "calendar_events": [{**calendar_row(e), "params": e.get("params")} for e in portal.calendar.values()],
                "calendar_deleted": [
                    {**calendar_row(e), "params": e.get("params"), "deleted_by": e.get("deleted_by")}
                    for e in portal.calendar_deleted
                ],
                "openlines": [dict(o) for o in portal.openlines],
                "lines": [dict(line) for line in openlines.lines(portal).values()],
                "chats": [openlines.public_chat(c) for c in portal.chats.values()],
                "frame_events": [dict(f) for f in portal.frame_events],
                "deliveries": [dict(d) for d in portal.deliveries],
            }
        )


@bp.post("/portals/<name>/limits")
def limits(name: str) -> Response:
    """Leaky bucket size and drain rate (requests/second) of one portal."""
    body = _body()
    portal = _portal_or_404(name)
    with _state().lock:
        if "bucket" in body:
            portal.bucket.size = float(body["bucket"])
        if "drain" in body:
            portal.bucket.drain = float(body["drain"])
        portal.bucket.level = 0.0
        portal.bucket.stamp = time.monotonic()
        return jsonify({"bucket": portal.bucket.size, "drain": portal.bucket.drain})


@bp.post("/portals/<name>/webhooks")
def webhooks(name: str) -> tuple[Response, int]:
    """Issue an incoming webhook acting as `user_id` (an active employee): 201 {"url", "user_id"}."""
    portal = _portal_or_404(name)
    user_id = _body().get("user_id", 1)
    with _state().lock:
        user = portal.find_user(user_id)
        if user is None or user.is_bot or not user.active:
            raise NotFoundError(f"unknown user {user_id}")
        code = secrets.token_hex(8)  # Bitrix24's codes are 16 lower-case letters and digits
        portal.webhooks[code] = user.id
    return jsonify({"url": f"{portal.rest}{user.id}/{code}/", "user_id": user.id}), 201


@bp.post("/portals/<name>/payment")
def payment(name: str) -> Response:
    """Flag the portal unpaid (PAYMENT_REQUIRED on refresh and REST) or paid again."""
    portal = _portal_or_404(name)
    with _state().lock:
        portal.payment_required = bool(_body().get("required", True))
        return jsonify({"payment_required": portal.payment_required})


@bp.post("/portals/<name>/events")
def send_event(name: str) -> Response:
    """Send any event (auth[...] filled in) to the handler bound for it."""
    body = _body()
    portal = _portal_or_404(name)
    event = body.get("event")
    if not event:
        raise SandboxError("event is required")
    fields = body.get("fields", body.get("data"))
    extra = body.get("extra", body.get("form"))
    return jsonify(
        lifecycle.send_event(
            _state(),
            portal,
            str(event),
            fields if isinstance(fields, dict) else None,
            extra if isinstance(extra, dict) else None,
            body.get("user_id"),
            bool(body.get("auth", True)),
            body.get("bot_id"),
        )
    )


# --- Open Lines ----------------------------------------------------------------------------------
@bp.post("/portals/<name>/openlines/message")
def openlines_message(name: str) -> Response:
    """A client writes to a line; the welcome bot's events are delivered before this answers."""
    return jsonify(openlines.client_message(_state(), _portal_or_404(name), _body()))


@bp.post("/portals/<name>/openlines/operator-reply")
def openlines_operator_reply(name: str) -> Response:
    """The line's operator answers in a chat (and so has the dialog from now on)."""
    return jsonify(openlines.operator_reply(_state(), _portal_or_404(name), _body()))


@bp.post("/portals/<name>/openlines/finish")
def openlines_finish(name: str) -> Response:
    """The operator finishes the session; OnSessionFinish goes to the bound handlers."""
    return jsonify(openlines.finish(_state(), _portal_or_404(name), _body()))


# --- tokens --------------------------------------------------------------------------------------
def _mint_bitrix(state: State, body: dict[str, Any], count: int, expires_in: Any) -> list[dict[str, Any]]:
    with state.lock:
        portal = state.portal(str(body["portal"])) if body.get("portal") else next(iter(state.portals.values()), None)
        if portal is None:
            raise NotFoundError("unknown portal")
        user_id = int(body.get("user_id", 1))
        if portal.find_user(user_id) is None:
            raise NotFoundError(f"unknown user {user_id}")
        out = []
        now = time.time()
        for _ in range(count):
            grant = state.mint_bitrix(portal, user_id, body.get("client_id"), expires_in)
            out.append(
                {
                    "grant_id": grant.grant_id,
                    "access_token": grant.access_token,
                    "refresh_token": grant.refresh_token,
                    "expires_in": int(grant.access_expires - now + 0.5),
                    "expires": int(grant.access_expires),
                    "member_id": portal.member_id,
                    "domain": portal.domain,
                    "client_endpoint": portal.rest,
                    "server_endpoint": state.oauth_rest,
                    "user_id": user_id,
                    "client_id": grant.client_id,
                    "scope": grant.scope,
                }
            )
        return out


def _mint_yandex(state: State, body: dict[str, Any], count: int, expires_in: Any) -> list[dict[str, Any]]:
    ttl = state.config["yandex_access_ttl"] if expires_in is None else expires_in
    client_id = body.get("client_id") or state.clients["yandex"].client_id or "unconfigured-yandex-client"
    with state.lock:
        user = state.yandex_user(str(body["login"])) if body.get("login") else next(iter(state.yandex_users.values()))
        out = []
        now = time.time()
        for _ in range(count):
            grant = state.store.mint(
                "yandex",
                client_id,
                {"uid": user.id, "login": user.login},
                "",
                ttl,
                state.config["yandex_access_ttl"],
            )
            out.append(
                {
                    "grant_id": grant.grant_id,
                    "access_token": grant.access_token,
                    "refresh_token": grant.refresh_token,
                    "expires_in": int(grant.access_expires - now + 0.5),
                    "expires": int(grant.access_expires),
                    "user_id": user.id,
                    "login": user.login,
                    "client_id": client_id,
                }
            )
        return out


def _mint_amocrm(state: State, body: dict[str, Any], count: int, expires_in: Any) -> list[dict[str, Any]]:
    ttl = state.config["amocrm_access_ttl"] if expires_in is None else expires_in
    client_id = body.get("client_id") or state.clients["amocrm"].client_id or "unconfigured-amocrm-client"
    with state.lock:
        account = state.add_amo_account(str(body.get("subdomain") or "sandboxcrm"))
        out = []
        now = time.time()
        for _ in range(count):
            grant = state.store.mint(
                "amocrm",
                client_id,
                {"subdomain": account.subdomain, "account_id": account.id},
                "",
                ttl,
                state.config["amocrm_refresh_ttl"],
            )
            out.append(
                {
                    "grant_id": grant.grant_id,
                    "access_token": grant.access_token,
                    "refresh_token": grant.refresh_token,
                    "expires_in": int(grant.access_expires - now + 0.5),
                    "expires": int(grant.access_expires),
                    "subdomain": account.subdomain,
                    "account_id": account.id,
                    "base_url": f"{state.base_url}/amocrm/{account.subdomain}",
                    "client_id": client_id,
                }
            )
        return out


_MINTERS = {"bitrix24": _mint_bitrix, "yandex": _mint_yandex, "amocrm": _mint_amocrm}


@bp.post("/oauth/tokens")
def mint_tokens() -> Response | tuple[Response, int]:
    """Mint `count` new grants for a provider (fast path for benchmarks)."""
    body = _body()
    provider = body.get("provider", "bitrix24")
    if provider not in _MINTERS:
        return _fail(f"provider must be one of {', '.join(_MINTERS)}")
    try:
        count = int(body.get("count", 1))
        expires_in = None if body.get("expires_in") is None else float(body["expires_in"])
    except (TypeError, ValueError):
        return _fail("count and expires_in must be numbers")
    if not 1 <= count <= MAX_MINT:
        return _fail(f"count must be between 1 and {MAX_MINT}")
    return jsonify({"tokens": _MINTERS[provider](_state(), body, count, expires_in)})


@bp.get("/oauth/grants/<grant_id>")
def grant(grant_id: str) -> Response:
    """Newest pair of a grant chain, rotation count and revocation flag."""
    found = _state().store.get(grant_id)
    if found is None:
        raise NotFoundError(f"unknown grant {grant_id}")
    with _state().lock:
        return jsonify(found.public())


@bp.post("/oauth/grants/<grant_id>/revoke")
def revoke(grant_id: str) -> Response:
    """Revoke a grant chain (its tokens stop working; refresh gives invalid_grant)."""
    found = _state().store.revoke(grant_id)
    if found is None:
        raise NotFoundError(f"unknown grant {grant_id}")
    return jsonify(found.public())


@bp.route("/oauth/refreshes", methods=["GET", "DELETE"])
def refreshes() -> Response:
    """Refresh counters per provider; DELETE resets them."""
    store = _state().store
    if request.method == "DELETE":
        store.reset_counters()
    return jsonify(store.refresh_counters())


# --- amoCRM accounts -----------------------------------------------------------------------------
@bp.route("/amocrm/accounts", methods=["GET", "POST"])
def amo_accounts() -> Response | tuple[Response, int]:
    """List or create amoCRM accounts (subdomains)."""
    state = _state()
    if request.method == "POST":
        body = _body()
        subdomain = str(body.get("subdomain") or "")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", subdomain):
            return _fail("subdomain must be lower-case letters, digits and dashes")
        account = state.add_amo_account(subdomain, body.get("name"))
        return jsonify(
            {
                "id": account.id,
                "subdomain": account.subdomain,
                "name": account.name,
                "base": f"{state.base_url}/amocrm/{account.subdomain}",
            }
        ), 201
    with state.lock:
        return jsonify(
            [
                {
                    "id": a.id,
                    "subdomain": a.subdomain,
                    "name": a.name,
                    "base": f"{state.base_url}/amocrm/{a.subdomain}",
                }
                for a in state.amo_accounts.values()
            ]
        )


# --- faults --------------------------------------------------------------------------------------
@bp.route("/faults", methods=["GET", "POST", "DELETE"])
def faults() -> Response | tuple[Response, int]:
    """Add (POST), list (GET) or clear (DELETE) injected faults."""
    registry = _state().faults
    if request.method == "POST":
        try:
            fault = registry.add(_body())
        except (TypeError, ValueError) as exc:
            return _fail(str(exc))
        return jsonify(fault.public()), 201
    if request.method == "DELETE":
        return jsonify({"cleared": registry.clear()})
    return jsonify(registry.list())
