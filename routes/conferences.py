"""The conferences API for the iframe UI (issue 8 §5): thin views over models/conference.py."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, jsonify, request, url_for
from pydantic import ValidationError

from models import openapi
from models.conference import Actor
from models.errors import ServiceError
from models.schemas import (
    ConferenceCreate,
    ConferencePatch,
    ConferenceQuery,
    CrmContextQuery,
    FieldError,
    UserQuery,
    field_reasons,
)
from routes.common import ApiError, bearer_required, json_body, services
from routes.i18n import error_message, normalize_language, request_language, translate

bp = Blueprint("conferences", __name__)

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
# Params of an error that the UI needs besides the code (support id, unknown addresses).
PUBLIC_PARAMS = ("request_id", "emails", "personal")


@bp.errorhandler(ValidationError)
@bp.errorhandler(FieldError)
def _invalid(exc):
    """422 with a stable reason per field."""
    response = jsonify(
        {"error": "validation_error", "message": error_message("validation_error", "en"), "fields": field_reasons(exc)}
    )
    response.status_code = 422
    return response


@bp.errorhandler(ServiceError)
def _refused(exc: ServiceError):
    """The one error shape, plus the params the UI shows (Yandex's request id, unknown e-mails)."""
    params = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in exc.params.items()}
    body = {"error": exc.code, "message": error_message(exc.code, "en", exc.message, **params)}
    body.update({k: exc.params[k] for k in PUBLIC_PARAMS if exc.params.get(k) not in (None, "")})
    response = jsonify(body)
    response.status_code = exc.status
    return response


def _actor() -> Actor:
    return Actor(portal=g.portal, user_id=g.identity.user_id, user_name=g.identity.name)


def _texts():
    """Words for notifications and calendar events, in the portal's language."""
    lang = normalize_language(g.portal.language) or request_language()
    return lambda key, **params: translate(key, lang, **params)


@bp.get("/api/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document generated from the request and response models."""
    return jsonify(openapi.document())


@bp.get("/api/conferences")
@bearer_required
def list_conferences():
    """The user's conferences: filters, search and pages."""
    query = ConferenceQuery.model_validate(request.args.to_dict())
    body = services().conferences.list_json(g.portal.id, g.identity.user_id, query)
    return current_app.response_class(body, mimetype="application/json")


@bp.post("/api/conferences")
@bearer_required
def create_conference():
    """Create a conference or broadcast; 201 with Location (an Idempotency-Key repeat returns the first)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise ApiError("bad_idempotency_key", status=400)
    data = ConferenceCreate.model_validate(json_body())
    conference, replayed = services().conferences.create(_actor(), data, _texts(), idempotency_key=key)
    response = jsonify(conference)
    response.status_code = 201
    response.headers["Location"] = url_for("conferences.get_conference", conference_id=conference["id"])
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/api/conferences/<int:conference_id>")
@bearer_required
def get_conference(conference_id: int):
    """One of the user's conferences."""
    return jsonify(services().conferences.get(_actor(), conference_id))


@bp.put("/api/conferences/<int:conference_id>")
@bearer_required
def replace_conference(conference_id: int):
    """Replace every field (absent optional fields take their defaults)."""
    data = ConferenceCreate.model_validate(json_body())
    return jsonify(services().conferences.update(_actor(), conference_id, data, _texts()))


@bp.patch("/api/conferences/<int:conference_id>")
@bearer_required
def patch_conference(conference_id: int):
    """Change only the fields sent; the rules are checked on the result."""
    patch = ConferencePatch.model_validate(json_body())
    current = services().conferences.get(_actor(), conference_id)
    merged = {name: current[name] for name in ConferenceCreate.model_fields}
    merged.update(patch.model_dump(exclude_unset=True))
    data = ConferenceCreate.model_validate(merged)
    return jsonify(services().conferences.update(_actor(), conference_id, data, _texts()))


@bp.delete("/api/conferences/<int:conference_id>")
@bearer_required
def delete_conference(conference_id: int):
    """Delete the meeting (or cancel it on our side when Telemost cannot), the event, and tell invitees."""
    return jsonify(services().conferences.delete(_actor(), conference_id, _texts()))


@bp.post("/api/conferences/<int:conference_id>/retry")
@bearer_required
def retry_conference(conference_id: int):
    """Finish what failed (the calendar event, the invitations, or a deletion)."""
    _kind, result = services().conferences.retry(_actor(), conference_id, _texts())
    return jsonify(result)


@bp.get("/api/bitrix/users")
@bearer_required
def portal_users():
    """Active employees of the portal by name, 50 a page."""
    query = UserQuery.model_validate(request.args.to_dict())
    return jsonify(services().conferences.users(_actor(), query.q, query.page))


@bp.get("/api/crm/context")
@bearer_required
def crm_context():
    """The CRM record of a card tab (`?entity=deal&id=42`) with its responsible person, read as the user."""
    query = CrmContextQuery.model_validate(request.args.to_dict())
    return jsonify(services().conferences.crm_context(_actor(), query.entity, query.id))


@bp.get("/api/telemost/account")
@bearer_required
def telemost_account():
    """Whose Yandex account organises this user's meetings, and whether it can create them."""
    return jsonify(services().conferences.account(_actor()))
