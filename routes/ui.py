"""The iframe UI: the verified app page, session renewal, the current user, Yandex connect, the portal API token."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, url_for

from models import crm
from models.connect import ConnectLink, ConnectRefused
from models.integrations import IntegrationError
from models.portal import Rejected
from models.security import Identity, new_secret
from routes.common import (
    ApiError,
    bearer_required,
    error_page,
    json_body,
    portal_admin_required,
    refuse_query_auth,
    services,
)
from routes.connect import confirm_page, link_language, nonce_from_request, refused_page, result_page
from routes.frame import frame_headers, portal_origin, verified_origin
from routes.i18n import error_message, normalize_language, request_language, translate

bp = Blueprint("ui", __name__)
log = logging.getLogger(__name__)

YANDEX_SCOPES = ("portal", "personal")


def _user_json(identity: Identity) -> dict:
    first, _, last = identity.name.partition(" ")
    return {
        "id": identity.user_id,
        "name": identity.name,
        "first_name": first,
        "last_name": last,
        "is_admin": identity.is_admin,
    }


def alerts_json(portal_id: int, lang: str | None = None) -> list[dict]:
    """The portal's alerts (codes from the model) with their words in the user's language."""
    lang = lang or request_language()
    return [
        dict(
            alert,
            message=translate(
                f"alert.{alert['code']}.{alert['provider']}", lang, default=translate(f"alert.{alert['code']}", lang)
            ),
        )
        for alert in services().portals.alerts(portal_id)
    ]


def _public_url(path: str) -> str:
    base = current_app.config["PUBLIC_URL"].rstrip("/") or request.host_url.rstrip("/") + request.script_root
    return f"{base}{path}"


def placement_boot(fields: dict) -> dict:
    """`placement` and, for a CRM card's tab, `crm` = {"entity", "id"} of the verified open (else null)."""
    binding = crm.from_placement(fields.get("PLACEMENT"), fields.get("PLACEMENT_OPTIONS"))
    if binding is not None:
        return {"placement": fields["PLACEMENT"], "crm": binding}
    # Anything else (unknown placements, bad options) opens the app as from the left menu.
    return {"placement": "DEFAULT", "crm": None}


@bp.route("/", methods=["GET", "POST"])
@refuse_query_auth
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
        body, status = error_page(
            translate("page.open_failed_title", lang),
            error_message(exc.code, lang, **exc.params),
            401 if exc.status < 500 else 503,
        )
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
        "lang": (fields.get("LANG") or "ru")[:8],
        **placement_boot(fields),
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
    return jsonify(
        {
            "user": _user_json(g.identity),
            "portal": {"member_id": g.portal.member_id, "domain": g.portal.domain},
            "alerts": alerts_json(g.portal.id),
        }
    )


@bp.get("/api/integrations")
@bearer_required
def integrations():
    """Connected outside accounts of this portal, and this employee's own Yandex account."""
    found = services().integrations
    return jsonify(
        {
            "yandex": found.yandex_status(g.portal.id),
            "yandex_personal": found.yandex_personal_status(g.portal.id, g.identity.user_id),
        }
    )


def _yandex_scope(raw) -> str:
    """`portal` (admins only) or `personal` (any verified employee)."""
    scope = raw if raw is not None else "portal"
    if scope not in YANDEX_SCOPES:
        raise ApiError("bad_scope", "scope must be 'portal' or 'personal'", 400)
    if scope == "portal" and not g.identity.is_admin:
        raise ApiError("forbidden", "only a portal administrator can do this", 403)
    return scope


@bp.post("/api/integrations/yandex/connect")
@bearer_required
def yandex_connect():
    """Start connecting a Yandex account (the portal's, or with {"scope": "personal"} the user's own).

    Answers a single-use start URL, valid LINK_TTL_SECONDS, that the UI opens in a new window.
    """
    data = json_body()
    scope = _yandex_scope(data.get("scope"))
    lang = normalize_language(data.get("lang") if isinstance(data.get("lang"), str) else None) or request_language()
    ticket = services().connect.issue(
        "yandex", scope, portal_id=g.portal.id, user_id=g.identity.user_id, user_name=g.identity.name, lang=lang
    )
    url = _public_url("/auth/yandex/start?" + urlencode({"ticket": ticket, "lang": lang}))
    return jsonify({"url": url, "scope": scope, "expires_in": services().connect.link_ttl})


@bp.delete("/api/integrations/yandex")
@bearer_required
def yandex_disconnect():
    """Forget the portal's Yandex account (admins), or with ?scope=personal the user's own."""
    scope = _yandex_scope(request.args.get("scope"))
    found = services().integrations
    if scope == "personal":
        found.disconnect_yandex_personal(g.portal.id, g.identity.user_id)
    else:
        found.disconnect_yandex(g.portal.id)
    return jsonify(
        {
            "yandex": found.yandex_status(g.portal.id),
            "yandex_personal": found.yandex_personal_status(g.portal.id, g.identity.user_id),
        }
    )


def _connect_portal(link: ConnectLink):
    """The installed portal a Yandex link belongs to, or None."""
    portal = services().portals.get(link.portal_id) if link.portal_id else None
    return portal if portal is not None and portal.installed else None


@bp.get("/auth/yandex/start")
def yandex_start():
    """Spend the single-use ticket and show, before anything else, which portal and user the account goes to.

    The first browser to open the link gets the confirmation page and a nonce cookie; only that browser
    can press "Connect" and finish the callback, so a link passed to someone else attaches nothing.
    """
    connect = services().connect
    ticket = request.args.get("ticket", "")
    nonce = new_secret(16)
    try:
        link = connect.open(ticket, nonce, "yandex")
    except ConnectRefused as exc:
        return refused_page("yandex", exc, link_language(connect.describe(ticket, "yandex")))
    portal = _connect_portal(link)
    if portal is None:
        return refused_page("yandex", ConnectRefused("portal_not_installed"), link_language(link))
    return confirm_page(
        link,
        ticket=ticket,
        nonce=nonce,
        action=url_for("ui.yandex_confirm"),
        provider_url=services().yandex.oauth_url,
        domain=portal.domain,
        secure=_public_url("").startswith("https://"),
    )


@bp.post("/auth/yandex/start")
def yandex_confirm():
    """The user pressed "Connect" in the browser that opened the link: on to Yandex's consent page."""
    connect = services().connect
    ticket = request.form.get("ticket", "")
    try:
        link, state = connect.confirm(ticket, nonce_from_request("yandex"), "yandex")
    except ConnectRefused as exc:
        return refused_page("yandex", exc, link_language(connect.describe(ticket, "yandex")))
    if _connect_portal(link) is None:
        return refused_page("yandex", ConnectRefused("portal_not_installed"), link_language(link))
    # 303: the browser follows with a GET, as Yandex's authorize page expects.
    return redirect(services().yandex.authorize_url(_public_url("/auth/yandex/callback"), state), code=303)


@bp.get("/auth/yandex/callback")
def yandex_callback():
    """Yandex sends the user back here with a code: store the account for the portal (or for the user)."""
    try:
        link = services().connect.finish(request.args.get("state", ""), nonce_from_request("yandex"), "yandex")
    except ConnectRefused as exc:
        return refused_page("yandex", exc, link_language(None))
    lang = link_language(link)
    if request.args.get("error"):
        return result_page(
            "yandex", "connect.denied.title.yandex", translate("connect.denied.message", lang), 400, lang
        )
    portal = _connect_portal(link)
    if portal is None:
        return refused_page("yandex", ConnectRefused("portal_not_installed"), lang)
    integrations = services().integrations
    try:
        if link.scope == "personal":
            result = integrations.connect_yandex_personal(portal.id, link.user_id, request.args.get("code", ""))
        else:
            result = integrations.connect_yandex(
                portal.id, request.args.get("code", ""), actor=f"user:{portal.id}:{link.user_id}"
            )
    except IntegrationError as exc:
        return result_page(
            "yandex",
            "connect.failed.title.yandex",
            error_message(exc.code, lang, exc.message, **exc.params),
            exc.status,
            lang,
        )
    log.info("portal %s connected a Yandex account (%s)", portal.member_id, link.scope)
    return result_page(
        "yandex",
        "connect.done.title.yandex",
        translate(f"connect.done.message.{link.scope}", lang, account=result["account"]),
        200,
        lang,
        close_window=True,
    )


@bp.get("/api/portal/admin-token")
@portal_admin_required
def portal_admin_token_status():
    """This portal's own X-API-Token for the admin card: issued, issued_at, expires_at, expired (never the value)."""
    return jsonify(services().portals.admin_token_status(g.portal.id))


@bp.post("/api/portal/admin-token")
@portal_admin_required
def portal_admin_token():
    """Issue (or replace) this portal's own X-API-Token for the admin endpoints; the value is shown once."""
    issued = services().portals.issue_admin_token(
        g.portal.id, actor=f"user:{g.identity.subject}", ttl_days=current_app.config["PORTAL_API_TOKEN_TTL_DAYS"]
    )
    return jsonify(issued), 201


@bp.delete("/api/portal/admin-token")
@portal_admin_required
def portal_admin_token_revoke():
    """Revoke this portal's own X-API-Token at once."""
    portals = services().portals
    revoked = portals.revoke_admin_token(g.portal.id, actor=f"user:{g.identity.subject}")
    return jsonify({"revoked": revoked, **portals.admin_token_status(g.portal.id)})
