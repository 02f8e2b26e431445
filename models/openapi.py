"""The OpenAPI 3.1 document of the whole JSON API, generated from the pydantic models in schemas.py.

Every schema comes from a model; this module only says which model answers which route (`OPERATIONS`),
which security scheme guards it, and which error statuses it may answer. The routes that are not JSON
(HTML pages, redirects, static files, /metrics) are listed in `EXCLUDED` with the reason;
tests/openapi/test_document.py checks that the two lists together cover every registered route.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from models import schemas

REF = "#/components/schemas/{model}"
FORM = "application/x-www-form-urlencoded"

# Security requirements (OpenAPI: one dict = all of these; a list = any one of them).
PUBLIC: list[dict] = []
SESSION = [{"session": []}]
ADMIN_TOKEN = [{"apiToken": []}, {"apiTokenQuery": []}, {"apiTokenBearer": []}]
PORTAL_ACCESS = SESSION + ADMIN_TOKEN
CRON = [{"cronToken": []}]
WEB_SESSION = [{"webSession": []}]

SECURITY_SCHEMES = {
    "session": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The iframe session token (HS256, at most 15 minutes) from the app page or POST /api/session. "
        "Routes marked *portal admin* need the token of a portal administrator.",
    },
    "apiToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Token",
        "description": "The global ADMIN_API_TOKEN, or a portal's own token (issued in the app's settings or with "
        "POST /api/portal/admin-token). A portal's token acts on its own portal only.",
    },
    "apiTokenQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The same token as `X-API-Token`, in the query string: accepted for the old bot's scripts; "
        "prefer the header (a query string ends up in access logs).",
    },
    "apiTokenBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The same token as `X-API-Token` as the old bot's `Authorization: Bearer <API_SECRET_TOKEN>` "
        "(a token without dots; a JWT is always read as a session token).",
    },
    "cronToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Cron-Token",
        "description": "CRON_TOKEN: the task endpoints, hit by cron.",
    },
    "webSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "b24_web_session",
        "description": "The first-party session cookie of the OAuth code flow (/auth/bitrix24): the app opened "
        "outside the portal renews its bearer token with it. Never used inside the frame.",
    },
}

# Routes that are not JSON, or not for API clients: (path, method) → why the document leaves them out.
EXCLUDED: dict[tuple[str, str], str] = {
    # HTML pages the portal opens in its iframe (a verified POST renders the Vue app).
    ("/", "GET"): "the iframe app page (HTML)",
    ("/", "POST"): "the iframe app page opened by Bitrix24 (HTML)",
    ("/install", "GET"): "the installer page (HTML); POST is documented (an event form, else the same page)",
    # Browser windows of the connect and sign-in flows: HTML pages and redirects, never JSON.
    ("/auth/amocrm/start", "GET"): "amoCRM connect confirmation page (HTML)",
    ("/auth/amocrm/start", "POST"): "redirect to amoCRM's consent page",
    ("/auth/amocrm/callback", "GET"): "amoCRM's redirect back (HTML result page)",
    ("/auth/yandex/start", "GET"): "Yandex connect confirmation page (HTML)",
    ("/auth/yandex/start", "POST"): "redirect to Yandex's consent page",
    ("/auth/yandex/callback", "GET"): "Yandex's redirect back (HTML result page)",
    ("/auth/bitrix24", "GET"): "code flow: the portal form (HTML) or a redirect to the portal's consent page",
    ("/auth/bitrix24/callback", "GET"): "code flow: the portal's redirect back (sets the cookie, redirects)",
    ("/auth/bitrix24/app", "GET"): "code flow: the app page in a normal tab (HTML)",
    ("/auth/bitrix24/logout", "POST"): "code flow: forget the cookie (redirect)",
    # Prometheus text format, for the scraper (METRICS_TOKEN or METRICS_ALLOW; not reachable through nginx).
    ("/metrics", "GET"): "Prometheus exposition (text/plain; version=0.0.4)",
    ("/static/{filename}", "GET"): "built front-end assets (served by nginx in production)",
}


@dataclass(frozen=True)
class Op:
    """One documented operation: its models, security and the error statuses it may answer."""

    method: str
    path: str
    summary: str
    security: list
    ok: type[BaseModel] | None
    errors: tuple[int, ...] = ()
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    form: bool = False
    tag: str = "conferences"
    extra: dict = field(default_factory=dict)


# The statuses every guarded route may answer besides its own: a refused credential, and for the tokens
# the throttle of failed attempts per client address.
_TOKEN = (401, 429)
_ADMIN = (401, 403, 429)
_PORTAL = (400, 401, 403, 404, 429)
_CONF_WRITE = (400, 401, 402, 404, 409, 422, 429, 502, 503)

S = schemas
OPERATIONS: tuple[Op, ...] = (
    # --- conferences (the iframe UI) ---
    Op(
        "get",
        "/api/conferences",
        "The user's conferences",
        SESSION,
        S.ConferencePage,
        (401, 422),
        query=S.ConferenceQuery,
    ),
    Op(
        "post",
        "/api/conferences",
        "Create a conference or broadcast",
        SESSION,
        S.Conference,
        _CONF_WRITE,
        201,
        body=S.ConferenceCreate,
        extra={"idempotency": True},
    ),
    Op("get", "/api/conferences/{conference_id}", "One conference", SESSION, S.Conference, (401, 404)),
    Op(
        "put",
        "/api/conferences/{conference_id}",
        "Replace a conference",
        SESSION,
        S.Conference,
        _CONF_WRITE,
        body=S.ConferenceCreate,
    ),
    Op(
        "patch",
        "/api/conferences/{conference_id}",
        "Change some fields",
        SESSION,
        S.Conference,
        _CONF_WRITE,
        body=S.ConferencePatch,
    ),
    Op(
        "delete",
        "/api/conferences/{conference_id}",
        "Delete (or cancel on our side) and tell invitees",
        SESSION,
        S.DeleteResult,
        (401, 404, 409, 502, 503),
    ),
    Op(
        "post",
        "/api/conferences/{conference_id}/retry",
        "Finish the step that failed (`failed_step`)",
        SESSION,
        None,
        (401, 402, 404, 409, 502, 503),
        extra={"one_of": (S.Conference, S.DeleteResult)},
    ),
    Op(
        "get",
        "/api/bitrix/users",
        "Active employees of the portal (name search, 50 a page)",
        SESSION,
        S.PortalUserPage,
        (401, 422, 502, 503),
        query=S.UserQuery,
    ),
    Op(
        "get",
        "/api/crm/context",
        "The CRM record of a card tab and its responsible person (read as the user)",
        SESSION,
        S.CrmContext,
        (401, 403, 404, 422, 502, 503),
        query=S.CrmContextQuery,
    ),
    Op(
        "get",
        "/api/telemost/account",
        "Whose Yandex account organises this user's meetings",
        SESSION,
        S.TelemostAccount,
        (401,),
    ),
    # --- session and the signed-in user ---
    Op(
        "post",
        "/api/session",
        "A new bearer token for a fresh Bitrix24 auth of the frame SDK",
        PUBLIC,
        S.Session,
        (400, 401, 503),
        body=S.SessionCreate,
        tag="session",
    ),
    Op(
        "post",
        "/api/session/cookie",
        "A new bearer token for the code flow's tab, from its session cookie",
        WEB_SESSION,
        S.Session,
        (400, 401),
        body=S.CookieSessionRequest,
        tag="session",
    ),
    Op(
        "get",
        "/api/current-user",
        "The verified user, the portal and its alerts",
        SESSION,
        S.CurrentUser,
        (401,),
        tag="session",
    ),
    Op(
        "get",
        "/api/users/current",
        "The seeds' name for /api/current-user",
        SESSION,
        S.CurrentUser,
        (401,),
        tag="legacy",
    ),
    # --- integrations and the portal's own settings (portal admin for the portal's account) ---
    Op(
        "get",
        "/api/integrations",
        "Connected outside accounts (the portal's and the user's own Yandex)",
        SESSION,
        S.Integrations,
        (401,),
        tag="integrations",
    ),
    Op(
        "post",
        "/api/integrations/yandex/connect",
        "A single-use link that connects a Yandex account (`scope=portal`: portal admin)",
        SESSION,
        S.ConnectLinkAnswer,
        (400, 401, 403),
        body=S.YandexConnect,
        tag="integrations",
    ),
    Op(
        "delete",
        "/api/integrations/yandex",
        "Forget the portal's Yandex account (portal admin), or `?scope=personal` the user's own",
        SESSION,
        S.Integrations,
        (400, 401, 403),
        query=S.ScopeQuery,
        tag="integrations",
    ),
    Op(
        "get",
        "/api/portal/admin-token",
        "The portal's own API token: issued, when, expiry (portal admin)",
        SESSION,
        S.AdminTokenStatus,
        (401, 403),
        tag="portal",
    ),
    Op(
        "post",
        "/api/portal/admin-token",
        "Issue or replace the portal's own API token, shown once (portal admin)",
        SESSION,
        S.AdminTokenIssued,
        (401, 403),
        201,
        tag="portal",
    ),
    Op(
        "delete",
        "/api/portal/admin-token",
        "Revoke the portal's own API token (portal admin)",
        SESSION,
        S.AdminTokenRevoked,
        (401, 403),
        tag="portal",
    ),
    Op(
        "get",
        "/api/portal/connections",
        "Every credential of the portal: status, refresh times (portal admin)",
        SESSION,
        S.Connections,
        (401, 403),
        tag="portal",
    ),
    # --- operators (curl): the global token or a portal's own token ---
    Op(
        "get",
        "/api/admin/status",
        "Portals, credentials, runs, the bot (a portal's token: its own portal)",
        ADMIN_TOKEN,
        S.AdminStatus,
        (*_ADMIN, 404),
        query=S.PortalQuery,
        tag="admin",
    ),
    Op(
        "get",
        "/api/admin/tokens/{provider}/{account}",
        "A currently valid access token for other services",
        ADMIN_TOKEN,
        S.AccessToken,
        (*_ADMIN, 404, 409, 502, 503),
        tag="admin",
    ),
    Op(
        "delete",
        "/api/admin/portal-token",
        "Revoke a portal's own API token (`?portal=<member_id>`)",
        ADMIN_TOKEN,
        S.PortalTokenRevoked,
        (400, *_ADMIN, 404),
        query=S.PortalQuery,
        tag="admin",
    ),
    Op(
        "get",
        "/api/admin/amocrm/accounts",
        "Registered amoCRM accounts (global token)",
        ADMIN_TOKEN,
        S.AmoCrmAccounts,
        _ADMIN,
        tag="admin",
    ),
    Op(
        "post",
        "/api/admin/amocrm/accounts",
        "Register an amoCRM account (global token)",
        ADMIN_TOKEN,
        S.AmoCrmAccount,
        (400, *_ADMIN, 409, 422, 502, 503),
        201,
        body=S.AmoCrmRegister,
        tag="admin",
    ),
    Op(
        "delete",
        "/api/admin/amocrm/accounts/{subdomain}",
        "Forget an amoCRM account (global token)",
        ADMIN_TOKEN,
        None,
        (*_ADMIN, 404),
        204,
        tag="admin",
    ),
    Op(
        "post",
        "/api/admin/amocrm/authorize",
        "A single-use link to connect amoCRM in a browser (global token)",
        ADMIN_TOKEN,
        S.ConnectLinkAnswer,
        (400, *_ADMIN),
        body=S.AmoCrmAuthorize,
        tag="admin",
    ),
    Op(
        "post",
        "/api/admin/reinit_db",
        "Bring the schema to the newest migration (global token)",
        ADMIN_TOKEN,
        S.SchemaCheck,
        _ADMIN,
        tag="admin",
    ),
    # --- the Open Lines bot and dialogs: a portal admin's session, the portal's token, or the global one ---
    Op(
        "post",
        "/api/admin/enable",
        "Switch the bot on",
        PORTAL_ACCESS,
        S.BotSwitch,
        _PORTAL,
        query=S.PortalQuery,
        tag="bot",
    ),
    Op(
        "post",
        "/api/admin/disable",
        "Switch the bot off (chats still go to operators)",
        PORTAL_ACCESS,
        S.BotSwitch,
        _PORTAL,
        query=S.PortalQuery,
        tag="bot",
    ),
    Op(
        "get",
        "/api/admin/lines",
        "The portal's Open Lines",
        PORTAL_ACCESS,
        S.OpenLines,
        (*_PORTAL, 502, 503),
        query=S.PortalQuery,
        tag="bot",
    ),
    Op(
        "post",
        "/api/admin/bot/attach",
        "Make the bot the welcome bot of a line",
        PORTAL_ACCESS,
        S.BotAttached,
        (*_PORTAL, 409, 502, 503),
        body=S.BotAttach,
        query=S.PortalQuery,
        tag="bot",
    ),
    Op(
        "get",
        "/api/admin/bot/settings",
        "Greeting, switch, transfer mode, time zone, working hours",
        PORTAL_ACCESS,
        S.BotSettings,
        _PORTAL,
        query=S.PortalQuery,
        tag="bot",
    ),
    Op(
        "put",
        "/api/admin/bot/settings",
        "Change some of the bot's settings",
        PORTAL_ACCESS,
        S.BotSettings,
        _PORTAL,
        body=S.BotSettingsChange,
        query=S.PortalQuery,
        tag="bot",
    ),
    Op(
        "get",
        "/api/dialogs",
        "A page of Open Lines dialogs",
        PORTAL_ACCESS,
        S.DialogPage,
        _PORTAL,
        query=S.DialogQuery,
        tag="dialogs",
        extra={"portal_query": True},
    ),
    Op(
        "get",
        "/api/dialogs.csv",
        "Every matching dialog as CSV (UTF-8 with BOM)",
        PORTAL_ACCESS,
        None,
        _PORTAL,
        query=S.DialogQuery,
        tag="dialogs",
        extra={"csv": True, "portal_query": True},
    ),
    Op(
        "get",
        "/api/dialogs/{chat_id}",
        "One dialog with its messages and hand-off",
        PORTAL_ACCESS,
        S.DialogDetail,
        _PORTAL,
        query=S.PortalQuery,
        tag="dialogs",
    ),
    Op(
        "get",
        "/api/users",
        "The portal's active employees (the old bot's shape)",
        PORTAL_ACCESS,
        S.Employees,
        (*_PORTAL, 502, 503),
        query=S.PortalQuery,
        tag="dialogs",
    ),
    # --- cron ---
    Op(
        "post",
        "/tasks/refresh",
        "Refresh every due credential",
        CRON,
        S.RefreshRun,
        (400, *_TOKEN),
        body=S.RunParams,
        tag="tasks",
    ),
    Op(
        "post",
        "/tasks/process-events",
        "Process bot events left in the inbox",
        CRON,
        S.EventsRun,
        (400, *_TOKEN),
        body=S.RunParams,
        tag="tasks",
    ),
    # --- probes ---
    Op("get", "/health", "Liveness", PUBLIC, S.Health, tag="health"),
    Op(
        "get",
        "/health/ready",
        "Readiness: the database answers",
        PUBLIC,
        S.Health,
        (503,),
        tag="health",
        extra={"unavailable": True},
    ),
    Op("get", "/api/openapi.json", "This document", PUBLIC, S.OpenApiDocument, tag="health"),
    # --- Bitrix24 events (authenticated by the portal's application_token in `auth[application_token]`) ---
    Op(
        "post",
        "/install",
        "ONAPPINSTALL posted as an event (a form with `event`)",
        PUBLIC,
        S.EventAccepted,
        (400, 401, 403, 404, 502, 503),
        body=S.BitrixEvent,
        form=True,
        tag="events",
        extra={"form_only": True, "also": (202,), "installer_page": True},
    ),
    Op(
        "post",
        "/events",
        "Bitrix24 events bound with event.bind (ONAPPUPDATE, ONAPPUNINSTALL, …)",
        PUBLIC,
        S.EventAccepted,
        (400, 401, 403, 404, 502, 503),
        200,
        body=S.BitrixEvent,
        form=True,
        tag="events",
        extra={"also": (202,)},
    ),
    Op(
        "post",
        "/python_bot/",
        "Open Lines bot events (the URL registered with imbot.register, with its slash)",
        PUBLIC,
        S.EventAccepted,
        (400, 401, 403, 404, 502, 503),
        body=S.BitrixEvent,
        form=True,
        tag="events",
        extra={"also": (202,)},
    ),
)


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(model) -> list[dict]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _path_params(path: str) -> list[dict]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    # Bitrix24 and database ids are positive 32-bit integers; an account is any text (its own slashes too).
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
        if n in ("conference_id", "chat_id")
        else {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for n in names
    ]


IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "repeat a create safely: the same key returns the first result",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
}


def _responses(op: Op) -> dict:
    if op.extra.get("csv"):
        ok = {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}
    elif op.extra.get("one_of"):
        ok = _json({"oneOf": [_ref(m) for m in op.extra["one_of"]]}, "the conference, or a finished deletion")
    elif op.ok is None:
        ok = {"description": "done (no body)"}
    else:
        ok = _json(_ref(op.ok), "success")
    out = {str(op.status): ok}
    for status in op.extra.get("also", ()):
        out[str(status)] = _json(_ref(op.ok), "accepted; the outcome is settled later")
    for status in op.errors:
        out[str(status)] = _json(_ref(schemas.Error), "error (`error` is a stable code)")
    if 422 in op.errors:
        out["422"] = _json(_ref(schemas.ValidationFailure), "validation failed: `fields` maps each field to a reason")
    if op.form:
        # A set-up that failed after the event was accepted answers the event's own shape
        # (`status: setup_failed`; ONAPPINSTALL adds `error` and `message`, ONAPPUPDATE `version`).
        out["502"] = _json(_ref(schemas.EventAccepted), "the portal's set-up failed (`status: setup_failed`)")
    if op.extra.get("installer_page"):
        # The same POST without an `event` is the installer Bitrix24 opens in its iframe: an HTML page.
        for status in ("200", "400", "401", "403", "502", "503"):
            out[status].setdefault("content", {})["text/html"] = {"schema": {"type": "string"}}
            out[status]["description"] += "; without `event`: the installer page (HTML)"
    if op.extra.get("unavailable"):
        out["503"] = _json(_ref(schemas.Unavailable), "the database cannot be used")
    if op.body is not None:
        # Any body over the app's limit (MAX_BODY_BYTES, 10 MB; nginx refuses it first) is a JSON 413.
        out["413"] = _json(_ref(schemas.Error), "the body is over 10 MB (`payload_too_large`)")
    return out


def _operation_id(op: Op) -> str:
    """`get /api/conferences/{conference_id}` → `get_api_conferences_conference_id`."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", f"{op.method}{op.path}")).strip("_")


def _operation(op: Op) -> dict:
    out: dict = {"summary": op.summary, "tags": [op.tag], "operationId": _operation_id(op)}
    if op.security != SESSION:  # the document's default
        out["security"] = op.security
    params = list(_query(op.query)) if op.query else []
    if op.extra.get("portal_query"):
        params += _query(schemas.PortalQuery)
    if op.extra.get("idempotency"):
        params.append(IDEMPOTENCY)
    if params:
        out["parameters"] = params
    if op.body is not None:
        if op.form:
            # Bitrix24 posts forms; /events and /python_bot/ also take the same event as JSON, while a JSON
            # POST to /install is no event (it opens the installer page).
            json_too = not op.extra.get("form_only")
            media = ("application/x-www-form-urlencoded", "application/json") if json_too else (FORM,)
        else:
            media = ("application/json",)
        out["requestBody"] = {"required": True, "content": {m: {"schema": _ref(op.body)} for m in media}}
    out["responses"] = _responses(op)
    return out


def _models() -> list[tuple[type[BaseModel], str]]:
    found: dict[type[BaseModel], str] = {schemas.Error: "serialization", schemas.ValidationFailure: "serialization"}
    for op in OPERATIONS:
        for model in (op.body,):
            if model is not None:
                found[model] = "validation"
        for model in (op.ok, *op.extra.get("one_of", ())):
            if model is not None:
                found.setdefault(model, "serialization")
    if any(op.extra.get("unavailable") for op in OPERATIONS):
        found[schemas.Unavailable] = "serialization"
    return list(found.items())


@functools.cache
def document() -> dict:
    """The whole document (built once)."""
    _, top = models_json_schema(_models(), ref_template=REF)
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        item = paths.setdefault(op.path, {})
        if "{" in op.path and "parameters" not in item:
            item["parameters"] = _path_params(op.path)
        item[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Yandex Telemost for Bitrix24 — API",
            "version": "1.0",
            "description": 'Errors answer `{"error": code, "message": text}` (`error` is a stable code). '
            "Bitrix24 events (/install, /events, /python_bot/) are authenticated by the portal's "
            "`auth[application_token]` in the body, as Bitrix24 posts them.",
        },
        "components": {"schemas": top.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
        "security": SESSION,
        "paths": paths,
    }
