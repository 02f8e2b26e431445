"""Fake amoCRM: OAuth consent redirect, token endpoint (problem-JSON errors) and /api/v4/account."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from .faults import faulty
from .state import State
from .tokens import Code, Grant

bp = Blueprint("amocrm", __name__, url_prefix="/amocrm")
PROBLEM_TYPE = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"


def _state() -> State:
    return current_app.extensions["sandbox"]


def problem(hint: str, status: int = 400) -> Response:
    """amoCRM OAuth problem JSON (the only shape ever observed)."""
    response = jsonify(
        {
            "hint": hint,
            "title": "Некорректный запрос",
            "type": PROBLEM_TYPE,
            "status": status,
            "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
        }
    )
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def _page(status: int, text: str) -> Response:
    return Response(f"<!doctype html><title>amoCRM</title><p>{text}</p>", status=status, mimetype="text/html")


@bp.get("/oauth")
@faulty("amocrm")
def authorize() -> Response:
    """Consent screen stand-in: approve at once and redirect to the integration's redirect URI."""
    state = _state()
    client = state.clients["amocrm"]
    if not client.client_id or request.args.get("client_id") != client.client_id:
        return _page(400, "Unknown integration (client_id)")
    if not client.redirect_uri:
        return _page(400, "AMOCRM_REDIRECT_URI is not configured for the sandbox")
    subdomain = request.args.get("subdomain") or "sandboxcrm"
    with state.lock:
        account = state.amo_accounts.get(subdomain)
    if account is None:
        return _page(400, f"Unknown account {subdomain}")
    code = state.store.issue_code(
        Code(
            "amocrm",
            client.client_id,
            {"subdomain": subdomain, "account_id": account.id},
            "",
            time.time() + state.config["amocrm_code_ttl"],
        ),
        lambda: "def50200" + secrets.token_hex(64),
    )
    query = {"code": code}
    if "state" in request.args:
        query["state"] = request.args["state"]
    query["referer"] = f"{subdomain}.amocrm.ru"
    separator = "&" if "?" in client.redirect_uri else "?"
    return redirect(f"{client.redirect_uri}{separator}{urlencode(query)}", code=302)


def _token_body(grant: Grant) -> dict[str, Any]:
    now = time.time()
    return {
        "token_type": "Bearer",
        "expires_in": max(0, int(grant.access_expires - now + 0.5)),
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "server_time": int(now),
    }


@bp.post("/<subdomain>/oauth2/access_token")
@faulty("amocrm", token_endpoint=True)
def access_token(subdomain: str) -> Response:
    """authorization_code / refresh_token grants (JSON body, form accepted too)."""
    state = _state()
    client = state.clients["amocrm"]
    data: dict[str, Any] = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    data = data if isinstance(data, dict) else {}
    if not client.client_id or data.get("client_id") != client.client_id:
        return problem("Check the `client_id` parameter")
    if not client.matches(data.get("client_id"), data.get("client_secret")):
        return problem("Check the `client_secret` parameter")
    if not client.redirect_uri or data.get("redirect_uri") != client.redirect_uri:
        return problem("Redirect URI is not associated with client")
    with state.lock:
        account = state.amo_accounts.get(subdomain)
    if account is None:
        return problem("Invalid account")
    grant_type = data.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange(state, subdomain, data)
    if grant_type == "refresh_token":
        return _refresh(state, subdomain, data)
    return problem("Check the `grant_type` parameter")


def _exchange(state: State, subdomain: str, data: dict[str, Any]) -> Response:
    code = data.get("code")
    if not code:
        return problem("Check the `code` parameter")
    record, error = state.store.redeem_code(
        "amocrm",
        str(code),
        lambda r: r.subject["subdomain"] == subdomain and r.client_id == data.get("client_id"),
    )
    if error == "unknown" or record is None:
        return problem("Cannot decrypt the authorization code")
    if error == "used":
        return problem("Authorization code has been revoked")
    if error == "expired":
        return problem("Authorization code has expired")
    if error == "mismatch":
        return problem("Invalid account")
    grant = state.store.mint(
        "amocrm",
        record.client_id,
        record.subject,
        "",
        state.config["amocrm_access_ttl"],
        state.config["amocrm_refresh_ttl"],
    )
    return jsonify(_token_body(grant))


def _refresh(state: State, subdomain: str, data: dict[str, Any]) -> Response:
    token = data.get("refresh_token")
    if not token:
        return problem("Check the `refresh_token` parameter")
    result = state.store.refresh(
        "amocrm",
        str(token),
        str(data.get("client_id")),
        access_ttl=state.config["amocrm_access_ttl"],
        refresh_ttl=None,
        keep_old_access=bool(state.config["amocrm_old_access_valid_after_refresh"]),
        precheck=lambda grant: None if grant.subject["subdomain"] == subdomain else "account",
    )
    if result.error == "precheck":
        return problem("Invalid account")
    if result.error in ("unknown", "wrong_client") or result.grant is None:
        return problem("Invalid refresh token")
    if result.error:  # spent, revoked or past its 3 months
        return problem("Token has been revoked", 401)
    return jsonify(_token_body(result.grant))


@bp.get("/<subdomain>/api/v4/account")
@faulty("amocrm")
def account(subdomain: str) -> Response:
    """Cheap probe: the account of a Bearer token."""
    state = _state()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    grant, status = state.store.lookup_access("amocrm", token.strip() if scheme.lower() == "bearer" else None)
    with state.lock:
        acct = state.amo_accounts.get(subdomain)
    if grant is None or status != "ok" or acct is None or grant.subject["subdomain"] != subdomain:
        response = jsonify(
            {
                "title": "Unauthorized",
                "type": "https://httpstatus.es/401",
                "status": 401,
                "detail": "Unauthorized",
            }
        )
        response.status_code = 401
        response.mimetype = "application/problem+json"
        return response
    return jsonify({"id": acct.id, "name": acct.name, "subdomain": acct.subdomain})
