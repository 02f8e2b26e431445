"""Token-protected endpoints for operators (curl), the token endpoint and /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import NotFound

from models.integrations import IntegrationError
from models.monitoring import prometheus_text, status_summary
from routes.bot import status_fields as bot_status_fields
from routes.common import ApiError, admin_token_required, error_page, json_body, services

bp = Blueprint("admin", __name__)

AMOCRM_STATE_AUDIENCE = "amocrm-connect-state"


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
        summary = {"portal": services().portals.describe(portal),
                   "credentials": services().vault.list(portal_id=portal.id),
                   "alerts": services().portals.alerts(portal.id)}
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
    try:
        result = integrations.valid_token(provider, account)
    except IntegrationError as exc:
        services().vault.audit(actor, "token_read_failed", f"{provider}/{account}",
                               {"error": exc.code, "ip": request.remote_addr})
        raise
    services().vault.audit(actor, "token_read", f"{provider}/{account}",
                           {"version": result["version"], "ip": request.remote_addr})
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
        str(data.get("subdomain") or ""), code=data.get("code") or None,
        access_token=data.get("access_token") or None, refresh_token=data.get("refresh_token") or None,
        expires_in=expires_in,
    )
    services().vault.audit("admin:global", "amocrm_registered", account["account"])
    response = jsonify(account)
    response.status_code = 201
    response.headers["Location"] = f"{request.script_root}/api/admin/amocrm/accounts/{account['account']}"
    return response


@bp.delete("/api/admin/amocrm/accounts/<subdomain>")
@admin_token_required
def amocrm_delete(subdomain: str):
    """Forget an amoCRM account."""
    _require_global()
    if not services().integrations.delete_amocrm(subdomain):
        raise NotFound("no such amoCRM account")
    services().vault.audit("admin:global", "amocrm_deleted", subdomain)
    return "", 204


@bp.post("/api/admin/amocrm/authorize")
@admin_token_required
def amocrm_authorize():
    """The amoCRM consent URL to open; its redirect lands on /auth/amocrm/callback."""
    _require_global()
    state = services().signer.sign_state({"by": "admin"}, 1200, AMOCRM_STATE_AUDIENCE)
    return jsonify({"url": services().amocrm.authorize_url(state)})


@bp.get("/auth/amocrm/callback")
def amocrm_callback():
    """amoCRM's redirect: ?code=…&state=…&referer=<subdomain>.amocrm.ru."""
    from models.security import InvalidSession

    try:
        services().signer.read_state(request.args.get("state", ""), AMOCRM_STATE_AUDIENCE)
    except InvalidSession:
        return error_page("Ссылка устарела", "Начните подключение amoCRM заново.", 400)
    subdomain = services().integrations.amocrm_subdomain(request.args.get("referer", ""))
    try:
        account = services().integrations.register_amocrm(subdomain, code=request.args.get("code") or None)
    except IntegrationError as exc:
        return error_page("Не удалось подключить amoCRM", exc.message, exc.status)
    services().vault.audit("admin:global", "amocrm_registered", account["account"])
    return error_page("amoCRM подключён", f"Аккаунт {account['account']} подключён. Окно можно закрыть.", 200)


@bp.get("/metrics")
def metrics():
    """Prometheus metrics (restrict by network in nginx)."""
    return Response(prometheus_text(services()), mimetype="text/plain", content_type="text/plain; version=0.0.4")
