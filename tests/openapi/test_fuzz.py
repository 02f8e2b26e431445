"""Schemathesis over every documented operation, in-process (WSGI), with valid auth for each security scheme.

Each operation gets its explicit examples and a bounded number of generated requests (positive mode: bodies
and parameters the schema allows). Every answer must be no 5xx, a documented status, and conform to the
documented model. Operations that would destroy the seed are repaired after each call (the portal's API
token re-issued, the Yandex account re-connected) rather than left out, so every operation is fuzzed.
"""

from __future__ import annotations

import itertools
import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from models import openapi

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "12"))
# `API_FUZZ_MODE=all` adds negative cases and the coverage phase (what the schema forbids; several minutes).
MODE = os.environ.get("API_FUZZ_MODE", "positive")
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261129,
        "generation": {"mode": MODE, "max-examples": MAX_EXAMPLES},
        # In the suite, positive requests only: the negative cases and the coverage phase (missing fields, wrong
        # types, boundary values) take minutes; run them with API_FUZZ_MODE=all. No stateful phase: the seed
        # is repaired per call, not per sequence of calls.
        "phases": {"coverage": {"enabled": MODE == "all"}, "stateful": {"enabled": False}},
    }
)


# The document is built from the models alone (tests/openapi/test_document.py checks the app serves it), so
# it is loaded at collection: one test per operation. Calls go to the seeded app in-process (`app=`).
schema = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)

# Which credential each call sends, by security requirement; cycled so every scheme is exercised.
_ROTATIONS: dict[str, itertools.cycle] = {}
# Session routes that need a portal administrator's session.
ADMIN_SESSION = ("/api/portal/", "/api/integrations/yandex")


def _credentials(seed, path: str, security: list) -> list[tuple[str, dict]]:
    """Valid (where, values) choices for an operation's security requirement."""
    if security == openapi.PUBLIC:
        return [("none", {})]
    if security == openapi.CRON:
        return [("headers", seed.cron)]
    if security == openapi.WEB_SESSION:
        return [("cookies", seed.web_session)]
    if security == openapi.SESSION:
        return [("headers", seed.admin if path.startswith(ADMIN_SESSION) else seed.employee)]
    tokens = [
        ("headers", seed.global_token),
        ("query", {"token": seed.global_token["X-API-Token"]}),
        ("headers", {"Authorization": f"Bearer {seed.global_token['X-API-Token']}"}),
    ]
    if not path.startswith(("/api/admin/amocrm", "/api/admin/reinit_db")):  # global token only
        tokens.append(("headers", seed.portal_token))
    if security == openapi.PORTAL_ACCESS:
        tokens.append(("headers", seed.admin))
    return tokens


_AUTH_HEADERS = ("authorization", "x-api-token", "x-cron-token")


def _authorize(case, seed) -> None:
    """Put the next valid credential for the operation on the case (dropping generated ones that would win)."""
    raw = case.operation.definition.raw
    security = raw.get("security", openapi.SESSION)
    key = f"{id(seed)} {case.operation.method} {case.operation.path}"
    rotation = _ROTATIONS.setdefault(key, itertools.cycle(_credentials(seed, case.operation.path, security)))
    where, values = next(rotation)
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in _AUTH_HEADERS}
    case.query = {k: v for k, v in (case.query or {}).items() if k != "token"}
    case.cookies = {k: v for k, v in (case.cookies or {}).items() if k != "b24_web_session"}
    getattr(case, where if where != "none" else "headers").update(values)


_CALLS: dict[str, int] = {}


def _steer(case, seed) -> None:
    """Every other call, point the generated request at seeded objects, so answers beyond 404 are checked too."""
    key = f"{case.operation.method} {case.operation.path}"
    _CALLS[key] = _CALLS.get(key, 0) + 1
    if case.query and "portal" in case.query:
        case.query["portal"] = seed.member_id  # another portal's name is a plain 403/404
    path = case.path_parameters or {}
    deleting = case.operation.method.upper() == "DELETE" and "conference_id" in path
    if deleting and (path["conference_id"] in seed.conference_ids or not _CALLS[key] % 2):
        # Delete a fresh one: the seeded conferences stay for the other operations.
        created = seed.world.client.post("/api/conferences", json={"name": "To delete"}, headers=seed.employee)
        path["conference_id"] = created.get_json()["id"]
    if _CALLS[key] % 2:
        return
    if "conference_id" in path and not deleting:
        path["conference_id"] = seed.conference_ids[_CALLS[key] // 2 % len(seed.conference_ids)]
    if "chat_id" in path:
        path["chat_id"] = seed.chat_id
    if "provider" in path:
        path.update(provider="bitrix24", account=seed.member_id)
    if case.operation.path == "/api/session" and isinstance(case.body, dict):
        # A fresh Bitrix24 auth of user 2, as the frame SDK hands it over.
        portal = seed.world.control.portal("portal1")
        pair = seed.world.control.mint(portal=portal["name"], user_id=2)
        case.body.update(access_token=pair["access_token"], member_id=portal["member_id"], domain=portal["domain"])
    if case.operation.path == "/api/admin/amocrm/accounts" and isinstance(case.body, dict):
        pair = seed.world.control.mint("amocrm", subdomain="fuzzcrm")
        case.body.update(
            subdomain="fuzzcrm", access_token=pair["access_token"], refresh_token=pair["refresh_token"], expires_in=60
        )
        case.body.pop("code", None)
    if "subdomain" in path:
        path["subdomain"] = "fuzzcrm"
    if case.operation.path == "/api/crm/context":
        case.query.update(entity="deal", id=42)
    if case.operation.path in ("/events", "/python_bot/", "/install") and isinstance(case.body, dict):
        if str(case.body.get("event", "")).upper() == "ONAPPUNINSTALL":
            return  # a valid uninstall would remove the seeded portal
        auth = {"member_id": seed.member_id, "application_token": seed.application_token}
        if case.media_type == "application/json":
            case.body["auth"] = auth
        else:
            case.body.update({f"auth[{k}]": v for k, v in auth.items()})


def _repair(case, seed) -> None:
    """Undo what a destructive operation did to the seed, so later calls still hold valid credentials."""
    op = (case.operation.method.upper(), case.operation.path)
    services = seed.world.services
    portal_id = seed.world.portal_ids["portal1"]
    if op in (
        ("POST", "/api/portal/admin-token"),
        ("DELETE", "/api/portal/admin-token"),
        ("DELETE", "/api/admin/portal-token"),
    ):
        seed.portal_token["X-API-Token"] = services.portals.issue_admin_token(portal_id, actor="test")["token"]
    if op == ("DELETE", "/api/integrations/yandex"):
        if not services.integrations.yandex_status(portal_id)["connected"]:
            seed.world.connect_yandex(portal_id, "sandbox.user")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_answers_match_the_document(case, seed):
    _authorize(case, seed)
    _steer(case, seed)
    try:
        response = case.call(app=seed.world.app)
    finally:
        _repair(case, seed)
    case.validate_response(response, checks=CHECKS)
