"""Shared route helpers: the JSON error shape, auth decorators and access to the services."""

from __future__ import annotations

import functools
import html

from flask import current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from models.errors import ServiceError
from models.security import InvalidSession, same_secret
from models.services import Services
from routes.i18n import error_message, request_language, translate

API_PREFIXES = ("/api/", "/tasks/", "/events", "/python_bot", "/install", "/metrics", "/health")


class ApiError(ServiceError):
    """Raised in views to answer `{"error": code, "message": …}` with an HTTP status."""


def services() -> Services:
    """The app's wired models."""
    return current_app.extensions["services"]


def json_error(code: str, message: str, status: int):
    """The one JSON error response."""
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


def wants_json() -> bool:
    """JSON for API-like paths and clients that ask for it; HTML pages elsewhere."""
    path = request.path
    if path.startswith(API_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_page(title: str, message: str, status: int):
    """A readable page for the iframe or a browser, in the request's language (see routes/i18n)."""
    lang = request_language()
    return render_template("error.html", title=title, message=message, status=status, lang=lang,
                           status_line=translate("page.status_code", lang, status=status)), status


def json_body() -> dict:
    """The request's JSON object; a malformed or non-object body is a 400, never a 500."""
    if not request.data:
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("bad_request", "the body must be a JSON object", 400)
    return data


def register_error_handlers(app) -> None:
    """App-level handlers: JSON under the API paths, HTML elsewhere."""

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        # Models' refusals (and ApiError from views) in the one JSON shape; words from the catalog.
        if wants_json():
            return json_error(exc.code, error_message(exc.code, "en", exc.message, **exc.params), exc.status)
        lang = request_language()
        return error_page(translate("page.error_title", lang),
                          error_message(exc.code, lang, exc.message, **exc.params), exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if wants_json():
            response = json_error(code, exc.description or exc.name, exc.code or 500)
            if exc.code == 405 and exc.valid_methods:
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            return response
        return error_page(f"{exc.code} {exc.name}", html.unescape(exc.description or ""), exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return json_error("internal_error", "something went wrong on our side", 500)
        lang = request_language()
        return error_page(translate("page.error_title", lang), error_message("internal_error", lang), 500)


def bearer_required(view):
    """Views for the iframe UI: a valid session token of an installed portal sets g.identity."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("unauthorized", "send the session token as Authorization: Bearer …", 401)
        try:
            identity = services().signer.verify(token.strip())
        except InvalidSession as exc:
            raise ApiError("unauthorized", "the session token is invalid or expired", 401) from exc
        portal = services().portals.get(identity.portal_id)
        if portal is None or not portal.installed or portal.member_id != identity.member_id:
            raise ApiError("unauthorized", "the application is no longer installed on this portal", 401)
        g.identity = identity
        g.portal = portal
        return view(*args, **kwargs)

    return wrapper


def portal_admin_required(view):
    """Like bearer_required, and the user must be a portal admin."""

    @functools.wraps(view)
    @bearer_required
    def wrapper(*args, **kwargs):
        if not g.identity.is_admin:
            raise ApiError("forbidden", "only a portal administrator can do this", 403)
        return view(*args, **kwargs)

    return wrapper


def admin_token_required(view):
    """curl endpoints: X-API-Token (or ?token=) with the global admin token or a portal's own token."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = request.headers.get("X-API-Token") or request.args.get("token") or ""
        if same_secret(token, current_app.config["ADMIN_API_TOKEN"]):
            g.admin_scope = "global"
            g.admin_portal = None
        else:
            portal = services().portals.portal_for_admin_token(token)
            if portal is None:
                raise ApiError("unauthorized", "send a valid X-API-Token header", 401)
            g.admin_scope = "portal"
            g.admin_portal = portal
        return view(*args, **kwargs)

    return wrapper


def cron_token_required(view):
    """Task endpoints: X-Cron-Token must equal CRON_TOKEN (constant-time)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not same_secret(request.headers.get("X-Cron-Token"), current_app.config["CRON_TOKEN"]):
            raise ApiError("unauthorized", "send a valid X-Cron-Token header", 401)
        return view(*args, **kwargs)

    return wrapper


def portal_access_required(view):
    """Bot and dialogs API: a portal admin's iframe bearer, the portal's own API token, or the global
    token with `portal=<member_id>`; sets g.api_portal (a per-portal token never reaches another portal)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        named = request.args.get("portal") or ""
        if request.headers.get("Authorization", "")[:7].lower() == "bearer ":

            @portal_admin_required
            def as_user():
                if named and named != g.portal.member_id:
                    raise ApiError("forbidden", "this session belongs to another portal", 403)
                g.api_portal, g.api_actor = g.portal, f"user:{g.identity.subject}"
                return view(*args, **kwargs)

            return as_user()

        @admin_token_required
        def as_token():
            if g.admin_scope == "global":
                if not named:
                    raise ApiError("portal_required", "name the portal with portal=<member_id>", 400)
                portal = services().portals.get_by_member(named[:64])
                if portal is None or not portal.installed:
                    raise ApiError("not_found", "no such portal", 404)
                g.api_portal, g.api_actor = portal, "admin:global"
            else:
                if named and named != g.admin_portal.member_id:
                    raise ApiError("forbidden", "this token belongs to another portal", 403)
                g.api_portal, g.api_actor = g.admin_portal, f"admin:portal:{g.admin_portal.member_id}"
            return view(*args, **kwargs)

        return as_token()

    return wrapper
