"""The OpenAPI document against the registered routes: every route is documented or excluded with a reason."""

from __future__ import annotations

import re

import schemathesis

from models import openapi

METHODS = {"get", "post", "put", "patch", "delete"}


def flask_path(rule: str) -> str:
    """`/api/conferences/<int:conference_id>` → `/api/conferences/{conference_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def routes(app) -> set[tuple[str, str]]:
    """(path, METHOD) of every rule in the app's url_map (HEAD and OPTIONS are Flask's own)."""
    return {
        (flask_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def documented(doc: dict) -> set[tuple[str, str]]:
    """(path, METHOD) of every operation in the document."""
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_every_route_is_documented_or_excluded(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    missing = routes(app) - documented(doc) - set(openapi.EXCLUDED)
    assert missing == set(), "document these routes in models/openapi.py (or exclude them there, with a reason)"


def test_every_documented_operation_is_a_route(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    assert documented(doc) - routes(app) == set()
    assert set(openapi.EXCLUDED) - routes(app) == set(), "an exclusion names a route that no longer exists"
    assert documented(doc) & set(openapi.EXCLUDED) == set()


def test_a_new_route_without_documentation_fails_the_comparison(app):
    app.add_url_rule("/api/undocumented/<int:thing_id>", "undocumented", lambda thing_id: {}, methods=["GET"])
    doc = app.test_client().get("/api/openapi.json").get_json()
    assert routes(app) - documented(doc) - set(openapi.EXCLUDED) == {("/api/undocumented/{thing_id}", "GET")}


def test_the_document_is_valid_openapi_3_1(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    # schemathesis checks the document against the OpenAPI 3.1 meta-schema.
    schemathesis.openapi.from_dict(doc).validate()


SCHEMES = {
    ("/api/conferences", "get"): None,  # the document's default: the session bearer
    ("/api/admin/status", "get"): [{"apiToken": []}, {"apiTokenQuery": []}, {"apiTokenBearer": []}],
    ("/api/dialogs", "get"): [{"session": []}, {"apiToken": []}, {"apiTokenQuery": []}, {"apiTokenBearer": []}],
    ("/tasks/refresh", "post"): [{"cronToken": []}],
    ("/api/session/cookie", "post"): [{"webSession": []}],
    ("/python_bot/", "post"): [],
    ("/health", "get"): [],
}


def test_each_route_names_its_security_scheme(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["security"] == [{"session": []}]
    assert {key: doc["paths"][key[0]][key[1]].get("security") for key in SCHEMES} == SCHEMES
    assert set(doc["components"]["securitySchemes"]) == {
        "session",
        "apiToken",
        "apiTokenQuery",
        "apiTokenBearer",
        "cronToken",
        "webSession",
    }


def test_install_documents_the_event_form_only(client):
    """Found by the fuzzer: a POST to /install without an event form (JSON, or empty) is the installer page."""
    doc = client.get("/api/openapi.json").get_json()
    operation = doc["paths"]["/install"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}
    assert set(operation["responses"]) >= {"200", "202", "400", "403"}
    for status in ("200", "400", "401"):
        assert set(operation["responses"][status]["content"]) == {"application/json", "text/html"}
    assert client.post("/install", json={"event": "ONAPPINSTALL"}).mimetype == "text/html"
    assert client.post("/install").mimetype == "text/html"


def test_schemas_come_from_the_models(client):
    from models import schemas

    doc = client.get("/api/openapi.json").get_json()
    components = doc["components"]["schemas"]
    assert components["RefreshRun"] == schemas.RefreshRun.model_json_schema(mode="serialization")
    bot = doc["paths"]["/python_bot/"]["post"]["requestBody"]["content"]
    assert set(bot) == {"application/x-www-form-urlencoded", "application/json"}
    csv = doc["paths"]["/api/dialogs.csv"]["get"]["responses"]["200"]["content"]
    assert set(csv) == {"text/csv"}
    errors = doc["paths"]["/api/admin/status"]["get"]["responses"]
    assert errors["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_a_failed_set_up_is_documented_with_the_event_shape(client):
    """ONAPPUPDATE's 502 answers {"status": "setup_failed", "version"}: no `error`, so not the Error model."""
    from models import schemas

    doc = client.get("/api/openapi.json").get_json()
    for path in ("/install", "/events", "/python_bot/"):
        schema = doc["paths"][path]["post"]["responses"]["502"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/EventAccepted"}
    schemas.EventAccepted.model_validate({"status": "setup_failed", "version": 3})


def test_every_operation_with_a_body_documents_the_413_it_can_answer(client):
    """A body over the 10 MB limit is a JSON 413 (`payload_too_large`) on every route that takes one."""
    doc = client.get("/api/openapi.json").get_json()
    with_body = [
        (path, method, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS and "requestBody" in operation
    ]
    assert with_body
    for path, method, operation in with_body:
        assert operation["responses"]["413"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, (method, path)
