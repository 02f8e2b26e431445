"""Token-protected endpoints for operators (curl), the token endpoint, amoCRM connect, /metrics, `flask portals`."""

from __future__ import annotations

from urllib.parse import urlencode

import click
from flask import Blueprint, Response, current_app, g, jsonify, redirect, request, url_for
from werkzeug.exceptions import NotFound

from models.connect import ConnectRefused
from models.integrations import IntegrationError
from models.metrics import EXPOSITION_CONTENT_TYPE, exposition
from models.monitoring import status_summary
from models.security import new_secret
from routes.bot import status_fields as bot_status_fields
from routes.common import ApiError, admin_token_required, json_body, metrics_access_required, services
from routes.connect import confirm_page, link_language, nonce_from_request, refused_page, result_page
from routes.i18n import error_message, normalize_language, request_language, translate
from routes.ui import alerts_json

# `flask portals …`: operator commands about installed portals.
bp = Blueprint("admin", __name__, cli_group="portals")


def _require_global() -> None:
    if g.admin_scope != "global":
        raise ApiError("forbidden", "this needs the global admin token", 403)


@bp.get("/api/admin/status")
@admin_token_required
def status():
    """Portals, credentials by provider and status, due count and the last refresh runs."""
    summary = status_summary(services())
    if g.admin_scope == "portal":
        portal = g.admin_portal
        summary = {
            "portal": services().portals.describe(portal),
            "credentials": services().vault.list(portal_id=portal.id),
            "alerts": alerts_json(portal.id, "en"),
        }
    summary["bot"] = bot_status_fields()
    return jsonify(summary)


@bp.get("/api/admin/tokens/<provider>/<path:account>")
@admin_token_required
def token(provider: str, account: str):
    """A currently valid access token for the customer's other services (never the refresh token)."""
    integrations = services().integrations
    if g.admin_scope == "portal":
        owner = integrations.credential_portal(provider, account)
        if owner is None or owner != g.admin_portal.id:
            raise ApiError("not_found", "no such credential", 404)
    actor = "admin:global" if g.admin_scope == "global" else f"admin:portal:{g.admin_portal.member_id}"
    result = integrations.read_token(provider, account, actor=actor, ip=request.remote_addr)
    response = jsonify(result)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/admin/amocrm/accounts")
@admin_token_required
def amocrm_list():
    """Registered amoCRM accounts."""
    _require_global()
    return jsonify({"accounts": services().integrations.list_amocrm()})


@bp.post("/api/admin/amocrm/accounts")
@admin_token_required
def amocrm_register():
    """Register an amoCRM account from `code` or from `access_token` + `refresh_token` (+ `expires_in`)."""
    _require_global()
    data = json_body()
    expires_in = data.get("expires_in")
    if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)):
        raise ApiError("bad_request", "expires_in must be an integer", 400)
    for name in ("subdomain", "code", "access_token", "refresh_token"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ApiError("bad_request", f"{name} must be a string", 400)
    account = services().integrations.register_amocrm(
        str(data.get("subdomain") or ""),
        code=data.get("code") or None,
        access_token=data.get("access_token") or None,
        refresh_token=data.get("refresh_token") or None,
        expires_in=expires_in,
        actor="admin:global",
    )
    response = jsonify(account)
    response.status_code = 201
    response.headers["Location"] = f"{request.script_root}/api/admin/amocrm/accounts/{account['account']}"
    return response


@bp.delete("/api/admin/amocrm/accounts/<subdomain>")
@admin_token_required
def amocrm_delete(subdomain: str):
    """Forget an amoCRM account."""
    _require_global()
    if not services().integrations.delete_amocrm(subdomain, actor="admin:global"):
        raise NotFound("no such amoCRM account")
    return "", 204


@bp.post("/api/admin/amocrm/authorize")
@admin_token_required
def amocrm_authorize():
    """A single-use start URL (valid 120 s) to open in a browser: it confirms, then goes to amoCRM's consent."""
    _require_global()
    data = json_body()
    lang = normalize_language(data.get("lang") if isinstance(data.get("lang"), str) else None) or request_language()
    connect = services().connect
    ticket = connect.issue("amocrm", "global", lang=lang)
    base = current_app.config["PUBLIC_URL"].rstrip("/") or request.host_url.rstrip("/") + request.script_root
    return jsonify(
        {
            "url": f"{base}/auth/amocrm/start?" + urlencode({"ticket": ticket, "lang": lang}),
            "expires_in": connect.link_ttl,
        }
    )


@bp.get("/auth/amocrm/start")
def amocrm_start():
    """Spend the single-use ticket and show what will be connected; binds this browser (nonce cookie)."""
    connect = services().connect
    ticket = request.args.get("ticket", "")
    nonce = new_secret(16)
    try:
        link = connect.open(ticket, nonce, "amocrm")
    except ConnectRefused as exc:
        return refused_page("amocrm", exc, link_language(connect.describe(ticket, "amocrm")))
    return confirm_page(
        link,
        ticket=ticket,
        nonce=nonce,
        action=url_for("admin.amocrm_confirm"),
        provider_url=services().amocrm.authorize_base,
        domain=None,
        secure=request.is_secure or current_app.config["PUBLIC_URL"].startswith("https://"),
    )


@bp.post("/auth/amocrm/start")
def amocrm_confirm():
    """The "Connect" button, pressed in the browser that opened the link: on to amoCRM's consent page."""
    connect = services().connect
    ticket = request.form.get("ticket", "")
    try:
        _link, state = connect.confirm(ticket, nonce_from_request("amocrm"), "amocrm")
    except ConnectRefused as exc:
        return refused_page("amocrm", exc, link_language(connect.describe(ticket, "amocrm")))
    return redirect(services().amocrm.authorize_url(state), code=303)


@bp.get("/auth/amocrm/callback")
def amocrm_callback():
    """amoCRM's redirect: ?code=…&state=…&referer=<subdomain>.amocrm.ru, once, in the browser that started."""
    try:
        link = services().connect.finish(request.args.get("state", ""), nonce_from_request("amocrm"), "amocrm")
    except ConnectRefused as exc:
        return refused_page("amocrm", exc, link_language(None))
    lang = link_language(link)
    if request.args.get("error"):
        return result_page(
            "amocrm", "connect.denied.title.amocrm", translate("connect.denied.message", lang), 400, lang
        )
    subdomain = services().integrations.amocrm_subdomain(request.args.get("referer", ""))
    try:
        account = services().integrations.register_amocrm(
            subdomain, code=request.args.get("code") or None, actor="admin:global"
        )
    except IntegrationError as exc:
        return result_page(
            "amocrm",
            "connect.failed.title.amocrm",
            error_message(exc.code, lang, exc.message, **exc.params),
            exc.status,
            lang,
        )
    return result_page(
        "amocrm",
        "connect.done.title.amocrm",
        translate("connect.done.message.amocrm", lang, account=account["account"]),
        200,
        lang,
    )


@bp.delete("/api/admin/portal-token")
@admin_token_required
def portal_token_revoke():
    """Revoke a portal's own X-API-Token: ?portal=<member_id> (the global token: any portal; a portal's: its own)."""
    member_id = request.args.get("portal", "")
    if not member_id:
        raise ApiError("portal_required", "name the portal: ?portal=<member_id>", 400)
    if g.admin_scope == "portal" and member_id != g.admin_portal.member_id:
        raise ApiError("forbidden", "a portal's token can revoke only its own portal's token", 403)
    portal = services().portals.get_by_member(member_id)
    if portal is None:
        raise ApiError("portal_not_found", "no such portal", 404)
    actor = "admin:global" if g.admin_scope == "global" else f"admin:portal:{member_id}"
    revoked = services().portals.revoke_admin_token(portal.id, actor=actor)
    return jsonify({"portal": member_id, "revoked": revoked})


@bp.cli.command("revoke-token")
@click.argument("member_id")
def revoke_token_command(member_id: str):
    """Revoke a portal's own X-API-Token (flask portals revoke-token <member_id>)."""
    portals = services().portals
    portal = portals.get_by_member(member_id)
    if portal is None:
        raise click.ClickException(f"no portal with member_id {member_id}")
    if portals.revoke_admin_token(portal.id, actor="cli"):
        click.echo(f"revoked the API token of portal {member_id} ({portal.domain})")
    else:
        click.echo(f"portal {member_id} ({portal.domain}) has no API token")


@bp.get("/metrics")
@metrics_access_required
def metrics():
    """Prometheus metrics: METRICS_TOKEN bearer or a METRICS_ALLOW address; read from the database."""
    return Response(exposition(current_app.extensions["metrics_registry"]), content_type=EXPOSITION_CONTENT_TYPE)


@bp.after_app_request
def _count_response(response):
    """Count every response by status class for /metrics (b24_http_responses_total, the 5xx-rate alert)."""
    try:
        services().metrics.count_response(response.status_code)
    except Exception:  # counting must never turn an answer into an error
        current_app.logger.warning("could not store the HTTP response counters", exc_info=True)
    return response
