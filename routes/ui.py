"""The iframe UI: the verified app page, session renewal, the current user, Yandex connect."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, make_response, redirect, render_template, request

from models.integrations import IntegrationError
from models.portal import Rejected
from models.security import Identity, InvalidSession, matches_hash, new_secret, token_hash
from routes.common import ApiError, bearer_required, error_page, json_body, portal_admin_required, services
from routes.frame import frame_headers, portal_origin, verified_origin
from routes.i18n import error_message, normalize_language, request_language, translate

bp = Blueprint("ui", __name__)
log = logging.getLogger(__name__)

YANDEX_TICKET_AUDIENCE = "yandex-connect-ticket"
YANDEX_STATE_AUDIENCE = "yandex-connect-state"


def _user_json(identity: Identity) -> dict:
    first, _, last = identity.name.partition(" ")
    return {"id": identity.user_id, "name": identity.name, "first_name": first, "last_name": last,
            "is_admin": identity.is_admin}


def alerts_json(portal_id: int, lang: str | None = None) -> list[dict]:
    """The portal's alerts (codes from the model) with their words in the user's language."""
    lang = lang or request_language()
    return [dict(alert, message=translate(f"alert.{alert['code']}.{alert['provider']}", lang,
                                          default=translate(f"alert.{alert['code']}", lang)))
            for alert in services().portals.alerts(portal_id)]


def _public_url(path: str) -> str:
    base = current_app.config["PUBLIC_URL"].rstrip("/") or request.host_url.rstrip("/") + request.script_root
    return f"{base}{path}"


@bp.route("/", methods=["GET", "POST"])
def index():
    """The app page opened by Bitrix24 (DEFAULT placement): verify the POST, then render the UI."""
    fields = request.values.to_dict()
    portals = services().portals
    origin = portal_origin(fields, portals)
    lang = normalize_language(fields.get("LANG")) or request_language()  # Bitrix24 puts LANG in the query
    if not fields.get("AUTH_ID"):
        body, status = error_page(translate("page.open_title", lang), translate("page.open_hint", lang), 401)
        return frame_headers(body, status, origin)
    try:
        identity, portal = services().identity.verify_frame(fields)
    except Rejected as exc:
        log.warning("iframe open refused: %s", exc.code)
        body, status = error_page(translate("page.open_failed_title", lang),
                                  error_message(exc.code, lang, **exc.params), 401 if exc.status < 500 else 503)
        return frame_headers(body, status, origin)
    origin = verified_origin(portal, fields, portals)  # from the stored domain, not the POST
    token, expires_at = services().signer.issue(identity)
    boot = {
        "token": token,
        "token_expires_at": expires_at,
        "api_base": request.script_root,
        "user": _user_json(identity),
        "portal": {"member_id": portal.member_id, "domain": portal.domain},
        "alerts": alerts_json(portal.id, lang),
        "placement": fields.get("PLACEMENT") or "DEFAULT",
        "lang": (fields.get("LANG") or "ru")[:8],
    }
    return frame_headers(render_template("index.html", boot=boot), 200, origin)


@bp.post("/api/session")
def new_session():
    """Exchange a fresh Bitrix24 auth from the frame SDK for a new bearer token."""
    data = json_body()
    access_token = str(data.get("access_token") or data.get("AUTH_ID") or "")
    member_id = str(data.get("member_id") or "")
    domain = str(data.get("domain") or data.get("DOMAIN") or "")
    if not access_token or not member_id or not domain:
        raise ApiError("bad_request", "send access_token, member_id and domain", 400)
    try:
        identity, _portal = services().identity.verify_session(access_token, member_id, domain)
    except Rejected as exc:
        # Bad input stays 400 and an unreachable Bitrix24 503; every other refusal means "not you": 401.
        status = exc.status if exc.status == 400 or exc.status >= 500 else 401
        raise ApiError(exc.code, error_message(exc.code, "en", **exc.params), status, **exc.params) from exc
    token, expires_at = services().signer.issue(identity)
    return jsonify({"token": token, "expires_at": expires_at, "user": _user_json(identity)})


@bp.get("/api/current-user")
@bearer_required
def current_user():
    """The verified user of this session, the portal and any alerts for it."""
    return jsonify({"user": _user_json(g.identity),
                    "portal": {"member_id": g.portal.member_id, "domain": g.portal.domain},
                    "alerts": alerts_json(g.portal.id)})


@bp.get("/api/integrations")
@bearer_required
def integrations():
    """Connected outside accounts of this portal."""
    return jsonify({"yandex": services().integrations.yandex_status(g.portal.id)})


@bp.post("/api/integrations/yandex/connect")
@portal_admin_required
def yandex_connect():
    """Start connecting a Yandex account: a one-time URL the UI opens in a new window."""
    signer = services().signer
    ticket = signer.sign_state({"pid": g.portal.id, "uid": g.identity.user_id}, 300, YANDEX_TICKET_AUDIENCE)
    return jsonify({"url": _public_url("/auth/yandex/start?" + urlencode({"ticket": ticket}))})


@bp.delete("/api/integrations/yandex")
@portal_admin_required
def yandex_disconnect():
    """Forget the portal's Yandex account."""
    services().integrations.disconnect_yandex(g.portal.id)
    return jsonify({"yandex": services().integrations.yandex_status(g.portal.id)})


YANDEX_NONCE_COOKIE = "yandex_connect_nonce"


@bp.get("/auth/yandex/start")
def yandex_start():
    """Check the one-time ticket and send the admin to Yandex's consent page.

    The state is bound to this browser with a nonce cookie (first-party, in the connect window, not
    in the portal frame): a start link passed to someone else cannot attach their Yandex account.
    """
    signer = services().signer
    try:
        ticket = signer.read_state(request.args.get("ticket", ""), YANDEX_TICKET_AUDIENCE)
    except InvalidSession:
        return error_page("Ссылка устарела", "Начните подключение Яндекса заново из приложения.", 400)
    nonce = new_secret(16)
    state = signer.sign_state({"pid": ticket["pid"], "uid": ticket["uid"], "nh": token_hash(nonce)}, 900,
                              YANDEX_STATE_AUDIENCE)
    response = redirect(services().yandex.authorize_url(_public_url("/auth/yandex/callback"), state))
    response.set_cookie(YANDEX_NONCE_COOKIE, nonce, max_age=900, httponly=True, samesite="Lax",
                        secure=_public_url("").startswith("https://"), path=f"{request.script_root}/auth/yandex/")
    return response


@bp.get("/auth/yandex/callback")
def yandex_callback():
    """Yandex sends the admin back here with a code: store the account for the portal."""
    if request.args.get("error"):
        return error_page("Яндекс не дал доступ", request.args.get("error_description", "Доступ не выдан."), 400)
    try:
        state = services().signer.read_state(request.args.get("state", ""), YANDEX_STATE_AUDIENCE)
    except InvalidSession:
        return error_page("Ссылка устарела", "Начните подключение Яндекса заново из приложения.", 400)
    if not matches_hash(request.cookies.get(YANDEX_NONCE_COOKIE), str(state.get("nh") or "")):
        return error_page("Подключение начато в другом окне",
                          "Начните подключение Яндекса заново из приложения в этом же браузере.", 400)
    portal = services().portals.get(int(state["pid"]))
    if portal is None or not portal.installed:
        return error_page("Портал не найден", "Приложение не установлено на этом портале.", 400)
    try:
        result = services().integrations.connect_yandex(portal.id, request.args.get("code", ""))
    except IntegrationError as exc:
        return error_page("Не удалось подключить Яндекс", exc.message, exc.status)
    log.info("portal %s connected Yandex account", portal.member_id)
    response = make_response(render_template(
        "error.html", title="Яндекс подключён", close_window=True,
        message=f"Аккаунт {result['account']} подключён. Окно закроется само.", status=200))
    response.delete_cookie(YANDEX_NONCE_COOKIE, path=f"{request.script_root}/auth/yandex/")
    return response


@bp.post("/api/portal/admin-token")
@portal_admin_required
def portal_admin_token():
    """Issue this portal's own X-API-Token for the admin endpoints (shown once)."""
    token = services().portals.issue_admin_token(g.portal.id, actor=f"user:{g.identity.subject}")
    return jsonify({"token": token}), 201
