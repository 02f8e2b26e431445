"""Fake portal REST engine: auth, rate limit, method dispatch, batch and call recording."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..state import Portal, State
from ..tokens import Grant
from .forms import ci_get, parse_pairs, strip_secrets, truthy
from .shapes import EXPIRED_TOKEN, INVALID_TOKEN, Page, RestError, rest_time
from .users import User

logger = logging.getLogger(__name__)
METHODS: dict[str, Callable[[Ctx, dict[str, Any]], Any]] = {}
BATCH_LIMIT = 50
_REF_RE = re.compile(r"\$result\[([^\[\]]+)\]((?:\[[^\[\]]*\])*)")
_REF_PART_RE = re.compile(r"\[([^\[\]]*)\]")
PAYMENT_FREE = {"app.info"}  # still answers on an unpaid portal so the app can learn why


def method(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a REST method implementation under one or more names."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            METHODS[name.lower()] = fn
        return fn

    return register


# Methods an incoming webhook may not call (spec §4.7, §7.4: app context only).
APP_ONLY_PREFIXES = ("event.", "placement.")


@dataclass
class Ctx:
    """Who is calling: portal, token grant (None for an incoming webhook) and acting user."""

    state: State
    portal: Portal
    grant: Grant | None
    user: User
    webhook: str | None = None  # the incoming webhook's code when the call came through one

    @property
    def client_id(self) -> str:
        """App that owns the token; an incoming webhook is its own client (it owns no app's bots)."""
        return self.grant.client_id if self.grant is not None else f"webhook:{self.user.id}:{self.webhook}"

    @property
    def ours(self) -> bool:
        """True for the app under test (tokens can be minted for foreign apps too)."""
        return self.grant is not None and self.grant.client_id == self.state.our_client_id

    def require_admin(self) -> None:
        """Refuse unless the acting user is a portal administrator."""
        if not self.user.admin:
            raise RestError("ACCESS_DENIED", "Access denied! Administrator rights required", 403)


def authenticate(state: State, portal: Portal, token: Any) -> tuple[Grant, User]:
    """Resolve `auth` to a grant and user of this portal, or raise the Bitrix24 error."""
    if not token:
        raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    grant, status = state.store.lookup_access("bitrix24", str(token))
    if grant is None or grant.subject.get("portal") != portal.name:
        raise RestError(*INVALID_TOKEN, 401)
    if status == "expired":
        raise RestError(*EXPIRED_TOKEN, 401)
    with state.lock:
        user = portal.find_user(grant.subject["user_id"])
    if user is None:
        raise RestError(*INVALID_TOKEN, 401)
    if not user.active:
        raise RestError("authorization_error", "User is not active", 401)
    return grant, user


def authenticate_webhook(state: State, portal: Portal, user_id: str, code: str) -> User:
    """Resolve `/rest/{user_id}/{code}/` to the employee the incoming webhook acts as (§3.1, §3.3)."""
    with state.lock:
        owner = portal.webhooks.get(code)
        user = portal.find_user(owner) if owner is not None else None
    if user is None or str(user.id) != user_id:
        raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    if not user.active:
        raise RestError("authorization_error", "User is not active", 401)
    return user


SCOPED_PREFIXES = (("placement.", "placement"), ("crm.", "crm"))


def invoke(ctx: Ctx, name: str, params: dict[str, Any]) -> Any:
    """Run one method (no auth/limit checks: the caller did them)."""
    if ctx.webhook is not None and name.startswith(APP_ONLY_PREFIXES):
        raise RestError("WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403)
    if (ctx.ours or ctx.webhook is not None) and ctx.portal.payment_required and name not in PAYMENT_FREE:
        raise RestError("PAYMENT_REQUIRED", "Payment required", int(ctx.state.config["payment_required_status"]))
    # Scopes are checked where the app's set-up must tolerate their absence (placement.*, crm.*).
    scope = next((s for p, s in SCOPED_PREFIXES if name.startswith(p)), None)
    if scope and ctx.grant is not None and scope not in ctx.grant.scope.split(","):
        raise RestError(
            "insufficient_scope", "The request requires higher privileges than provided by the access token", 401
        )
    fn = METHODS.get(name)
    if fn is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    return fn(ctx, params)


def _wrap(result: Any, started: float) -> dict[str, Any]:
    if isinstance(result, Page):
        body: dict[str, Any] = {"result": result.items}
        if result.next is not None:
            body["next"] = result.next
        if result.total is not None:
            body["total"] = result.total
        body["time"] = rest_time(started)
        return body
    return {"result": result, "time": rest_time(started)}


def handle(
    state: State, portal: Portal, name: str, params: dict[str, Any], webhook: tuple[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Serve one HTTP REST request: limit, auth (`auth` token, or `webhook` = (user id, code) from the
    URL), dispatch, and record it in the call log with the kind of auth used."""
    started = time.time()
    entry: dict[str, Any] = {
        "method": name,
        "params": strip_secrets(params),
        "user_id": None,
        "time": started,
        "status": None,
        "batch": None,
        "auth": "webhook" if webhook else "oauth",
    }
    with state.lock:
        portal.record(portal.calls, entry)  # recorded first so the log keeps arrival order
        allowed = portal.bucket.take()
    try:
        if not allowed:
            raise RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
        if webhook:
            grant, user = None, authenticate_webhook(state, portal, *webhook)
        else:
            grant, user = authenticate(state, portal, params.get("auth"))
        entry["user_id"] = user.id
        ctx = Ctx(state, portal, grant, user, webhook[1] if webhook else None)
        body = _wrap(invoke(ctx, name, params), started)
        status = 200
    except RestError as exc:
        status, body = exc.status, exc.body()
    except Exception as exc:  # a sandbox bug must still look like a Bitrix24 error to the app
        logger.exception("REST method %s failed", name)
        status, body = 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": f"Sandbox error: {exc}"}
    entry["status"] = status
    return status, body


# --- batch ----------------------------------------------------------------------------------------
def _resolve(results: dict[str, Any], key: str, path: str) -> Any:
    value: Any = results.get(key)
    for part in _REF_PART_RE.findall(path):
        if isinstance(value, list):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            value = None
    return value


def _substitute(value: str, results: dict[str, Any]) -> Any:
    whole = _REF_RE.fullmatch(value)
    if whole:
        # A whole-value reference keeps lists intact (ID[]=... style expansion).
        return _resolve(results, whole.group(1), whole.group(2))
    return _REF_RE.sub(lambda m: str(_resolve(results, m.group(1), m.group(2)) or ""), value)


def parse_command(command: str, results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`method?query` of a batch cmd to (method, params), with $result[...] references filled in."""
    name, _, query = command.partition("?")
    pairs: list[tuple[str, Any]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        pairs.append((key, _substitute(value, results) if "$result" in value else value))
    return name.strip().lower().removesuffix(".json"), parse_pairs(pairs)


@method("batch")
def batch(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Up to 50 sub-calls with the caller's token; halt=1 stops at the first error."""
    commands = ci_get(params, "cmd") or {}
    if isinstance(commands, list):
        commands = {str(i): c for i, c in enumerate(commands)}
    if not isinstance(commands, dict):
        commands = {}
    if len(commands) > BATCH_LIMIT:
        raise RestError("ERROR_BATCH_LENGTH_EXCEEDED", f"Max batch length exceeded ({BATCH_LIMIT})", 400)
    halt = truthy(ci_get(params, "halt", default=0))
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    nexts: dict[str, Any] = {}
    times: dict[str, Any] = {}
    for key, command in commands.items():
        started = time.time()
        name, sub_params = parse_command(str(command), results)
        entry: dict[str, Any] = {
            "method": name,
            "params": strip_secrets(sub_params),
            "user_id": ctx.user.id,
            "time": started,
            "status": None,
            "batch": key,
            "auth": "oauth" if ctx.webhook is None else "webhook",
        }
        with ctx.state.lock:
            ctx.portal.record(ctx.portal.calls, entry)
        try:
            if name == "batch":
                raise RestError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405)
            result = invoke(ctx, name, sub_params)
        except RestError as exc:
            entry["status"] = exc.status
            errors[key] = exc.body()
            if halt:
                break
            continue
        entry["status"] = 200
        if isinstance(result, Page):
            results[key] = result.items
            if result.total is not None:
                totals[key] = result.total
            if result.next is not None:
                nexts[key] = result.next
        else:
            results[key] = result
        times[key] = rest_time(started, operating=False)
    # PHP serialises empty arrays as [] - the fixtures show exactly that.
    return {
        "result": results or [],
        "result_error": errors or [],
        "result_total": totals or [],
        "result_next": nexts or [],
        "result_time": times or [],
    }
