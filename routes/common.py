"""Shared route helpers: the JSON error shape, auth decorators and access to the services."""

from __future__ import annotations

import functools
import html
import ipaddress
import json
import logging
import re

from flask import current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from config import address_networks
from models.errors import ServiceError
from models.security import InvalidSession, same_secret
from models.services import Services
from routes.i18n import error_message, request_language, translate

API_PREFIXES = ("/api/", "/tasks/", "/events", "/python_bot", "/install", "/metrics", "/health")
# Bitrix24 posts these in the body; in a URL they leak through access logs and Referer headers.
QUERY_SECRETS = ("AUTH_ID", "REFRESH_ID", "APPLICATION_TOKEN")
_SURROGATE = re.compile("[\ud800-\udfff]")

log = logging.getLogger(__name__)


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
    return render_template(
        "error.html",
        title=title,
        message=message,
        status=status,
        lang=lang,
        status_line=translate("page.status_code", lang, status=status),
    ), status


def has_lone_surrogate(value) -> bool:
    """True when any string in a parsed JSON value (keys included) holds a lone UTF-16 surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_object(raw: bytes) -> dict:
    """Parse a JSON object body: malformed, too deeply nested, non-object or lone surrogates → 400."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: "[" * 200000 exhausts the decoder's depth; refuse it like any malformed body.
        raise ApiError("bad_request", "the body must be a JSON object", 400) from None
    if not isinstance(data, dict):
        raise ApiError("bad_request", "the body must be a JSON object", 400)
    # "\ud800" is valid JSON but no valid text: it would fail later, deep in hashing or the database.
    if has_lone_surrogate(data):
        raise ApiError("bad_request", "the body holds a string that is not valid Unicode", 400)
    return data


def json_body() -> dict:
    """The request's JSON object; a malformed or non-object body is a 400, never a 500."""
    if not request.data:
        return {}
    if not request.is_json:
        raise ApiError("bad_request", "the body must be a JSON object", 400)
    return json_object(request.get_data())


def form_items() -> list[tuple[str, str]]:
    """Query string and form fields as (name, value) pairs; text that is not valid Unicode → 400."""
    try:
        items = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    except UnicodeError:
        raise ApiError("bad_request", "the request holds text that is not valid UTF-8", 400) from None
    if any(_SURROGATE.search(name) or _SURROGATE.search(value) for name, value in items):
        raise ApiError("bad_request", "the request holds text that is not valid Unicode", 400)
    return items


def register_error_handlers(app) -> None:
    """App-level handlers: JSON under the API paths, HTML elsewhere."""

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        # Models' refusals (and ApiError from views) in the one JSON shape; words from the catalog.
        if wants_json():
            response = json_error(exc.code, error_message(exc.code, "en", exc.message, **exc.params), exc.status)
        else:
            lang = request_language()
            body, status = error_page(
                translate("page.error_title", lang),
                error_message(exc.code, lang, exc.message, **exc.params),
                exc.status,
            )
            response = current_app.make_response((body, status))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            response.headers["Retry-After"] = str(int(retry_after))
        return response

    @app.errorhandler(413)
    def _too_large(exc: HTTPException):
        # Always JSON: an HTML page would look up the language in the very form that is too large to read.
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        return json_error(
            "payload_too_large", error_message("payload_too_large", "en", limit_mb=limit // (1024 * 1024)), 413
        )

    @app.errorhandler(UnicodeError)
    def _bad_text(exc: UnicodeError):
        # Text that is not valid Unicode (a lone surrogate, bytes that are not UTF-8) is the client's
        # mistake wherever it surfaces: a 400, and no traceback in the log.
        log.warning("request refused on %s: %s", request.path, type(exc).__name__)
        return _service_error(ApiError("bad_request", "the request holds text that is not valid Unicode", 400))

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
        # Cached per process for a few seconds (models/portal.py): no database round trip per request.
        portal = services().portals.session_portal(identity.portal_id)
        if portal is None or portal.member_id != identity.member_id:
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


# The endpoint groups counted per client address (models/ratelimit.py), set on views by the decorators below.
RATE_LIMIT_ATTRIBUTE = "rate_limit_group"


def _rate_limited(group: str):
    """Mark a view as counted in the rate-limit group `group` (functools.wraps carries the mark outwards)."""

    def mark(view):
        setattr(view, RATE_LIMIT_ATTRIBUTE, group)
        return view

    return mark


def register_rate_limit(app) -> None:
    """Count every request to a marked view per client address; past the limit, 429 with Retry-After.

    Only views marked by the token decorators are counted: the admin API, the dialogs/bot API, the cron tasks
    and /metrics. The Bitrix24 event handlers (install, events, the bot webhook) are never counted by address:
    Bitrix24 sends every portal's events from a few addresses of its own, so a per-address limit would drop
    the events of many portals at once (they are authenticated by application_token instead). Unmarked
    requests cost one dictionary look-up here, no database query.
    """

    @app.before_request
    def _rate_limit():
        if request.method == "OPTIONS" or request.endpoint is None:
            return None
        group = getattr(app.view_functions.get(request.endpoint), RATE_LIMIT_ATTRIBUTE, None)
        if group is not None:
            app.extensions["rate_limit"].hit(group, client_address())
        return None


def client_address() -> str:
    """The client's address as the trusted proxies reported it (see TRUSTED_PROXIES)."""
    return request.remote_addr or "unknown"


def _throttle():
    return current_app.extensions["auth_throttle"]


def admin_token_required(view):
    """curl endpoints: X-API-Token (or ?token=) with the global admin token or a portal's own token.

    Failed attempts are counted per client address; after a burst the client gets 429 for a while.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = request.headers.get("X-API-Token") or request.args.get("token") or _legacy_bearer_token()
        client = client_address()
        _throttle().check("admin", client)
        if same_secret(token, current_app.config["ADMIN_API_TOKEN"]):
            g.admin_scope = "global"
            g.admin_portal = None
        else:
            portal = services().portals.portal_for_admin_token(token) if token else None
            if portal is None:
                if token:
                    _throttle().failed("admin", client)
                raise ApiError("unauthorized", "send a valid X-API-Token header", 401)
            g.admin_scope = "portal"
            g.admin_portal = portal
        return view(*args, **kwargs)

    return _rate_limited("admin")(wrapper)


def _legacy_bearer_token() -> str:
    """The old bot's `Authorization: Bearer <API_SECRET_TOKEN>`: an API token (no dots), never a session JWT."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value and "." not in value else ""


def cron_token_required(view):
    """Task endpoints: X-Cron-Token must equal CRON_TOKEN (constant-time); failures are throttled."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = request.headers.get("X-Cron-Token") or ""
        client = client_address()
        _throttle().check("cron", client)
        if not same_secret(token, current_app.config["CRON_TOKEN"]):
            if token:
                _throttle().failed("cron", client)
            raise ApiError("unauthorized", "send a valid X-Cron-Token header", 401)
        return view(*args, **kwargs)

    return _rate_limited("tasks")(wrapper)


def portal_access_required(view):
    """Bot and dialogs API: a portal admin's iframe bearer, the portal's own API token, or the global
    token with `portal=<member_id>`; sets g.api_portal (a per-portal token never reaches another portal)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        named = request.args.get("portal") or ""
        if request.headers.get("Authorization", "")[:7].lower() == "bearer " and not _legacy_bearer_token():

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
                # The old single-portal bot took no portal name: with one installed portal, it is that one.
                portal = services().portals.only_installed() if not named else None
                if portal is None and not named:
                    raise ApiError("portal_required", "name the portal with portal=<member_id>", 400)
                portal = portal or services().portals.get_by_member(named[:64])
                if portal is None or not portal.installed:
                    raise ApiError("not_found", "no such portal", 404)
                g.api_portal, g.api_actor = portal, "admin:global"
            else:
                if named and named != g.admin_portal.member_id:
                    raise ApiError("forbidden", "this token belongs to another portal", 403)
                g.api_portal, g.api_actor = g.admin_portal, f"admin:portal:{g.admin_portal.member_id}"
            return view(*args, **kwargs)

        return as_token()

    return _rate_limited("portal_api")(wrapper)


@functools.lru_cache(maxsize=8)
def _networks(setting: str):
    return tuple(address_networks(setting))


def address_allowed(address: str | None, setting: str) -> bool:
    """True when the address lies in one of the comma-separated addresses or networks of `setting`."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(setting))


def metrics_access_required(view):
    """/metrics: `Authorization: Bearer METRICS_TOKEN`, or a client address listed in METRICS_ALLOW.

    The app checks this itself rather than relying on the proxy's allow-list alone: a proxy rule is one
    path spelling away from being bypassed.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        config = current_app.config
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token:
            client = client_address()
            _throttle().check("metrics", client)
            if not same_secret(token, config["METRICS_TOKEN"]):
                _throttle().failed("metrics", client)
                raise ApiError("unauthorized", "send a valid metrics bearer token", 401)
        elif not address_allowed(request.remote_addr, config["METRICS_ALLOW"]):
            if config["METRICS_TOKEN"]:
                raise ApiError("unauthorized", "send the metrics bearer token", 401)
            raise ApiError("forbidden", "metrics are not served to this address", 403)
        return view(*args, **kwargs)

    return _rate_limited("metrics")(wrapper)


def refuse_query_auth(view):
    """Pages Bitrix24 opens with a POST: refuse Bitrix24 tokens in the query string (400, a readable page)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if any(name in request.args for name in QUERY_SECRETS):
            from routes.frame import frame_headers, portal_origin

            log.warning("refused %s %s: Bitrix24 auth in the query string", request.method, request.path)
            lang = request_language()
            body, status = error_page(translate("page.error_title", lang), error_message("auth_in_query", lang), 400)
            # Framable by the portal named in the request, like the other refusals of the iframe page.
            return frame_headers(body, status, portal_origin(request.args.to_dict(), services().portals))
        return view(*args, **kwargs)

    return wrapper
