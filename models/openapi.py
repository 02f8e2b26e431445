"""The OpenAPI 3.1 document of the conferences API, generated from the pydantic models in schemas.py."""

from __future__ import annotations

import functools

from pydantic.json_schema import models_json_schema

from models import schemas

REF = "#/components/schemas/{model}"
_MODELS = [
    (schemas.ConferenceCreate, "validation"),
    (schemas.ConferencePatch, "validation"),
    (schemas.Conference, "serialization"),
    (schemas.ConferencePage, "serialization"),
    (schemas.DeleteResult, "serialization"),
    (schemas.PortalUserPage, "serialization"),
    (schemas.TelemostAccount, "serialization"),
    (schemas.CrmContext, "serialization"),
    (schemas.Error, "serialization"),
    (schemas.ValidationFailure, "serialization"),
]


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict:
    out = {str(s): _json(schemas.Error, "error (`error` is a stable code)") for s in statuses}
    if 422 in statuses:
        out["422"] = _json(schemas.ValidationFailure, "validation failed: `fields` maps each field to a reason")
    return out


def _query(model) -> list[dict]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "repeat a create safely: the same key returns the first result",
    "schema": {"type": "string", "maxLength": 128},
}


@functools.cache
def document() -> dict:
    """The whole document (built once)."""
    _, top = models_json_schema(_MODELS, ref_template=REF)
    body = {"required": True, "content": {"application/json": {"schema": _ref(schemas.ConferenceCreate)}}}
    patch = {"required": True, "content": {"application/json": {"schema": _ref(schemas.ConferencePatch)}}}
    conference = _json(schemas.Conference, "the conference")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Yandex Telemost for Bitrix24 — conferences API", "version": "1.0"},
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "the iframe session token",
                }
            },
        },
        "security": [{"session": []}],
        "paths": {
            "/api/conferences": {
                "get": {
                    "summary": "The user's conferences",
                    "parameters": _query(schemas.ConferenceQuery),
                    "responses": {"200": _json(schemas.ConferencePage, "a page"), **_errors(401, 422)},
                },
                "post": {
                    "summary": "Create a conference or broadcast",
                    "parameters": [IDEMPOTENCY],
                    "requestBody": body,
                    "responses": {"201": conference, **_errors(400, 401, 402, 404, 409, 422, 429, 503)},
                },
            },
            "/api/conferences/{id}": {
                "parameters": [ID],
                "get": {"summary": "One conference", "responses": {"200": conference, **_errors(401, 404)}},
                "put": {
                    "summary": "Replace a conference",
                    "requestBody": body,
                    "responses": {"200": conference, **_errors(400, 401, 402, 404, 409, 422, 429, 503)},
                },
                "patch": {
                    "summary": "Change some fields",
                    "requestBody": patch,
                    "responses": {"200": conference, **_errors(400, 401, 402, 404, 409, 422, 429, 503)},
                },
                "delete": {
                    "summary": "Delete (or cancel on our side) and tell invitees",
                    "responses": {"200": _json(schemas.DeleteResult, "what happened"), **_errors(401, 404, 409, 503)},
                },
            },
            "/api/conferences/{id}/retry": {
                "parameters": [ID],
                "post": {
                    "summary": "Finish the step that failed (`failed_step`)",
                    "responses": {
                        "200": {
                            "description": "the conference, or a finished deletion",
                            "content": {
                                "application/json": {
                                    "schema": {"oneOf": [_ref(schemas.Conference), _ref(schemas.DeleteResult)]}
                                }
                            },
                        },
                        **_errors(401, 404),
                    },
                },
            },
            "/api/bitrix/users": {
                "get": {
                    "summary": "Active employees of the portal (name search, 50 a page)",
                    "parameters": _query(schemas.UserQuery),
                    "responses": {"200": _json(schemas.PortalUserPage, "a page"), **_errors(401, 422, 503)},
                },
            },
            "/api/crm/context": {
                "get": {
                    "summary": "The CRM record of a card tab and its responsible person (read as the user)",
                    "parameters": _query(schemas.CrmContextQuery),
                    "responses": {"200": _json(schemas.CrmContext, "the record"), **_errors(401, 403, 404, 422, 503)},
                },
            },
            "/api/telemost/account": {
                "get": {
                    "summary": "Whose Yandex account organises this user's meetings",
                    "responses": {"200": _json(schemas.TelemostAccount, "the account"), **_errors(401)},
                },
            },
        },
    }
