"""Fake Bitrix24 OAuth server (oauth.bitrix.info): token endpoint and app.info."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from ..faults import faulty
from ..state import State
from ..tokens import Grant
from .forms import request_params
from .shapes import (
    EXPIRED_TOKEN,
    INVALID_TOKEN,
    RestError,
    error_response,
    oauth_app_info,
    rest_time,
    token_payload,
)

bp = Blueprint("bitrix_oauth", __name__)
INVALID_GRANT = "The provided authorization grant is invalid, expired, revoked"


def _state() -> State:
    return current_app.extensions["sandbox"]


def portal_problem(state: State, grant: Grant) -> RestError | None:
    """Why tokens of this grant may not be issued right now (uninstalled app, unpaid portal)."""
    portal = state.portal(grant.subject["portal"])
    if portal is None:
        return RestError("NOT_INSTALLED", "Application not installed", 401)
    if grant.client_id != state.our_client_id:
        return None
    if portal.uninstalled:
        return RestError("NOT_INSTALLED", "Application not installed", 401)
    if portal.payment_required:
        return RestError("PAYMENT_REQUIRED", "Payment required", int(state.config["payment_required_status"]))
    return None


@bp.route("/oauth/token/", methods=["GET", "POST"])
@bp.route("/oauth/token", methods=["GET", "POST"])
@faulty("oauth", token_endpoint=True)
def token() -> Response:
    """Authorization-code exchange and refresh (query string or form body)."""
    state = _state()
    params = request_params(request)
    if not state.clients["bitrix24"].matches(params.get("client_id"), params.get("client_secret")):
        return error_response("invalid_client", "Invalid client credentials", 400)
    grant_type = params.get("grant_type")
    if grant_type == "refresh_token":
        return _refresh(state, params)
    if grant_type == "authorization_code":
        return _exchange(state, params)
    return error_response("invalid_request", 'Invalid "grant_type" parameter', 400)


def _refresh(state: State, params: dict[str, Any]) -> Response:
    token = params.get("refresh_token")
    if not token:
        return error_response("invalid_request", 'No "refresh_token" parameter found', 400)
    result = state.store.refresh(
        "bitrix24",
        str(token),
        str(params.get("client_id")),
        access_ttl=state.config["access_ttl"],
        refresh_ttl=None,
        keep_old_access=bool(state.config["bitrix_old_access_valid_after_refresh"]),
        precheck=lambda grant: portal_problem(state, grant),
    )
    if result.error == "precheck":
        problem: RestError = result.detail
        return error_response(problem.error, problem.description, problem.status)
    if result.error or result.grant is None:
        return error_response("invalid_grant", INVALID_GRANT, 400)
    return jsonify(token_payload(state, result.grant))


def _exchange(state: State, params: dict[str, Any]) -> Response:
    code = params.get("code")
    if not code:
        return error_response("invalid_request", 'No "code" parameter found', 400)
    record, error = state.store.redeem_code("bitrix24", str(code), lambda r: r.client_id == params.get("client_id"))
    if error or record is None:
        return error_response("invalid_grant", INVALID_GRANT, 400)
    portal = state.portal(record.subject["portal"])
    if portal is None:
        return error_response("NOT_INSTALLED", "Application not installed", 401)
    grant = state.mint_bitrix(portal, record.subject["user_id"])
    problem = portal_problem(state, grant)
    if problem is not None:
        state.store.revoke(grant.grant_id)
        return error_response(problem.error, problem.description, problem.status)
    return jsonify(token_payload(state, grant, full=False))


@bp.route("/rest/<path:method>", methods=["GET", "POST"])
@faulty("oauth")
def rest(method: str) -> Response:
    """app.info on the OAuth server: which app, portal and user a token belongs to."""
    started = time.time()
    name = method.lower().removesuffix(".json")
    if name != "app.info":
        return error_response("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    state = _state()
    token = request_params(request).get("auth")
    grant, status = state.store.lookup_access("bitrix24", str(token) if token else None)
    if status == "unknown" or grant is None:
        return error_response(*INVALID_TOKEN, 401)
    if status == "expired":
        return error_response(*EXPIRED_TOKEN, 401)
    portal = state.portal(grant.subject["portal"])
    if portal is None:
        return error_response(*INVALID_TOKEN, 401)
    return jsonify({"result": oauth_app_info(state, grant, portal, str(token)), "time": rest_time(started)})
