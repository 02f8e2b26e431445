"""Fake Yandex OAuth (oauth.yandex.ru) and Yandex ID login info (login.yandex.ru/info)."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from .faults import faulty
from .state import State, YandexUser
from .tokens import Code, Grant

bp = Blueprint("yandex", __name__)


def _state() -> State:
    return current_app.extensions["sandbox"]


def _error(error: str, description: str, status: int = 400) -> Response:
    response = jsonify({"error_description": description, "error": error})
    response.status_code = status
    return response


def _page(status: int, text: str) -> Response:
    return Response(
        f"<!doctype html><title>Yandex ID</title><h1>Ошибка</h1><p>{text}</p>",
        status=status,
        mimetype="text/html",
    )


def token_owner(state: State, token: str | None) -> tuple[Grant | None, YandexUser | None, str]:
    """Resolve a Yandex OAuth token (also for a fake Telemost): grant, account and ok/expired/unknown."""
    grant, status = state.store.lookup_access("yandex", token)
    if grant is None:
        return None, None, status
    with state.lock:
        return grant, state.yandex_users.get(grant.subject["uid"]), status


@bp.get("/yandex-oauth/authorize")
@faulty("yandex")
def authorize() -> Response:
    """Auto-approve as the sandbox account (or the one named by login_hint) and redirect with a code."""
    state = _state()
    client = state.clients["yandex"]
    args = request.args
    if not client.client_id or args.get("client_id") != client.client_id:
        return _page(400, "Приложение с таким client_id не найдено (unknown client_id)")
    if args.get("response_type") != "code":
        return _page(400, "response_type must be code")
    redirect_uri = args.get("redirect_uri")
    if not redirect_uri:
        return _page(400, "redirect_uri is required by the sandbox (no registered Callback URI)")
    hint = args.get("login_hint")
    with state.lock:
        user = state.yandex_user(hint) if hint else next(iter(state.yandex_users.values()))
    code = state.store.issue_code(
        Code(
            "yandex",
            client.client_id,
            {"uid": user.id, "login": user.login},
            args.get("scope", ""),
            time.time() + state.config["yandex_code_ttl"],
            {"scope_requested": "scope" in args},
        ),
        lambda: f"{secrets.randbelow(10**7):07d}",
    )
    query = {"code": code}
    if "state" in args:
        query["state"] = args["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(f"{redirect_uri}{separator}{urlencode(query)}", code=302)


def _client_credentials() -> tuple[Any, Any] | Response:
    header = request.headers.get("Authorization")
    if header:
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return _error("invalid_request", "Malformed Authorization header")
        return auth.username, auth.password  # the header wins over body parameters
    return request.form.get("client_id"), request.form.get("client_secret")


def _token_body(grant: Grant, scope: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token_type": "bearer",
        "access_token": grant.access_token,
        "expires_in": max(0, int(grant.access_expires - time.time() + 0.5)),
        "refresh_token": grant.refresh_token,
    }
    if scope:
        body["scope"] = scope
    return body


@bp.post("/yandex-oauth/token")
@faulty("yandex", token_endpoint=True)
def token() -> Response:
    """authorization_code and refresh_token grants; refresh tokens rotate and are single-use."""
    state = _state()
    client = state.clients["yandex"]
    creds = _client_credentials()
    if isinstance(creds, Response):
        return creds
    client_id, client_secret = creds
    if not client.client_id or client_id != client.client_id:
        return _error("invalid_client", "Client not found")
    if not client.matches(client_id, client_secret):
        return _error("invalid_client", "Wrong client secret")
    grant_type = request.form.get("grant_type")
    if not grant_type:
        return _error("invalid_request", "grant_type not in body")
    if grant_type == "authorization_code":
        return _exchange(state, str(client_id))
    if grant_type == "refresh_token":
        return _refresh(state, str(client_id))
    return _error("unsupported_grant_type", "Unsupported grant type")


def _exchange(state: State, client_id: str) -> Response:
    code = request.form.get("code")
    if not code:
        return _error("invalid_request", "code not in body")
    if not (len(code) == 7 and code.isdigit()):
        return _error("bad_verification_code", "Invalid verification code format")
    record, error = state.store.redeem_code("yandex", code, lambda r: r.client_id == client_id)
    if error == "expired":
        return _error("invalid_grant", "Code has expired")
    if error or record is None:
        return _error("invalid_grant", "Invalid code")
    ttl = state.config["yandex_access_ttl"]
    grant = state.store.mint("yandex", client_id, record.subject, record.scope, ttl, ttl)
    return jsonify(_token_body(grant, record.scope if record.extra.get("scope_requested") else None))


def _refresh(state: State, client_id: str) -> Response:
    token = request.form.get("refresh_token")
    if not token:
        return _error("invalid_request", "refresh_token not in body")
    ttl = state.config["yandex_access_ttl"]
    result = state.store.refresh(
        "yandex",
        token,
        client_id,
        access_ttl=ttl,
        refresh_ttl=ttl,
        keep_old_access=bool(state.config["yandex_old_access_valid_after_refresh"]),
    )
    if result.error == "expired":
        return _error("invalid_grant", "Refresh token expired")
    if result.error or result.grant is None:
        return _error("invalid_grant", "Invalid refresh token")
    return jsonify(_token_body(result.grant))


@bp.get("/yandex-login/info")
@faulty("yandex")
def login_info() -> Response:
    """Account info for `Authorization: OAuth <token>`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in ("oauth", "bearer"):
        token = request.args.get("oauth_token", "")
    grant, user, status = token_owner(_state(), token.strip() or None)
    if grant is None or user is None or status != "ok":
        response = jsonify({"error": "invalid_token", "error_description": "Invalid or expired token"})
        response.status_code = 401
        return response
    return jsonify(
        {
            "id": user.id,
            "login": user.login,
            "client_id": grant.client_id,
            "default_email": user.email,
            "display_name": user.display_name,
            "real_name": user.real_name,
        }
    )
