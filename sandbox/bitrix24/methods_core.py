"""Portal REST methods: users, profile, app.info, event.* and placement.*."""

from __future__ import annotations

import re
import time
from typing import Any

from .forms import as_list, ci_get, truthy
from .rest import Ctx, method
from .shapes import Page, RestError, version_value
from .users import User

PAGE_SIZE = 50
_FILTER_KEY_RE = re.compile(r"^(!=|!@|>=|<=|=%|!%|%|@|!|=|>|<)?(.+)$")
_EVENT_RE = re.compile(r"^ON[A-Z0-9_]+$")
_URL_RE = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)


def paginate(items: list[Any], params: dict[str, Any]) -> Page:
    """Slice a list into Bitrix24 pages of 50 using `start` (start=-1 skips the count)."""
    raw = ci_get(params, "start", default=0)
    try:
        start = int(raw)
    except (TypeError, ValueError):
        start = 0
    if start == -1:
        return Page(items[:PAGE_SIZE], None, None)
    start = max(0, start)
    chunk = items[start : start + PAGE_SIZE]
    following = start + PAGE_SIZE
    return Page(chunk, len(items), following if following < len(items) else None)


# --- users -----------------------------------------------------------------------------------
def _field(user: User, name: str) -> Any:
    row = user.rest_get()
    return row.get(name)


def _match_one(user: User, op: str, field: str, value: Any) -> bool:
    values = [str(v) for v in as_list(value)] or [""]
    if field in ("NAME_SEARCH", "FIND"):
        words = [user.name.lower(), user.last_name.lower(), user.email.lower()]
        return all(any(w.startswith(term) for w in words) for term in str(value).lower().split())
    if field == "ACTIVE":
        result = user.active == truthy(value)
        return not result if op.startswith("!") else result
    actual = _field(user, field)
    if actual is None:
        return True  # unknown fields are ignored, like the lenient real filter
    actual_values = [str(a) for a in actual] if isinstance(actual, list) else [str(actual)]
    if op in ("%", "=%"):
        hit = any(v.lower() in a.lower() for v in values for a in actual_values)
    elif op in (">", "<", ">=", "<="):
        try:
            a, v = float(actual_values[0]), float(values[0])
        except ValueError:
            return False
        hit = {">": a > v, "<": a < v, ">=": a >= v, "<=": a <= v}[op]
    else:
        hit = any(a == v for v in values for a in actual_values)
    return not hit if op.startswith("!") else hit


def filter_users(users: list[User], flt: dict[str, Any]) -> list[User]:
    """Apply a user.get FILTER (ID, ACTIVE, NAME_SEARCH, USER_TYPE, UF_DEPARTMENT, prefixes)."""
    chosen = []
    for user in users:
        ok = True
        for raw_key, value in flt.items():
            match = _FILTER_KEY_RE.match(str(raw_key).upper())
            if not match:
                continue
            op, field = match.group(1) or "", match.group(2)
            if not _match_one(user, op, field, value):
                ok = False
                break
        if ok:
            chosen.append(user)
    return chosen


_USER_GET_RESERVED = {"filter", "sort", "order", "select", "start", "admin_mode", "image_resize", "auth"}


@method("user.current")
def user_current(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """The token's user."""
    return ctx.user.rest_current()


@method("user.get")
def user_get(ctx: Ctx, params: dict[str, Any]) -> Page:
    """Employees filtered, sorted and paged (bots are never returned)."""
    flt = ci_get(params, "FILTER")
    if not isinstance(flt, dict):
        # Old style: filter fields straight in the parameters (user.get?ID=5).
        flt = {k: v for k, v in params.items() if str(k).lower() not in _USER_GET_RESERVED}
    with ctx.state.lock:
        users = list(ctx.portal.users.values())
    users = filter_users(users, flt)
    sort = str(ci_get(params, "sort", default="ID") or "ID").upper()
    desc = str(ci_get(params, "order", default="ASC") or "ASC").upper() == "DESC"
    if sort == "ID":
        users.sort(key=lambda u: u.id, reverse=desc)
    else:
        users.sort(key=lambda u: str(_field(u, sort) or ""), reverse=desc)
    page = paginate(users, params)
    select = [str(s).upper() for s in as_list(ci_get(params, "select"))]
    rows = []
    for user in page.items:
        row = user.rest_get()
        if select and "*" not in select:
            row = {k: v for k, v in row.items() if k in select or k == "ID"}
        rows.append(row)
    return Page(rows, page.total, page.next)


@method("user.admin")
def user_admin(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Whether the token's user is an administrator."""
    return ctx.user.admin


@method("profile")
def profile(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Basic profile of the token's user."""
    return ctx.user.profile()


@method("app.info")
def app_info(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """Portal-side app.info: INSTALLED stays false until installFinish."""
    portal = ctx.portal
    return {
        "ID": 7 if ctx.ours else 8,
        "CODE": ctx.client_id,
        "VERSION": version_value(portal.version) if ctx.ours else 1,
        "STATUS": "L",
        "INSTALLED": portal.install_finished if ctx.ours else True,
        "PAYMENT_EXPIRED": "Y" if ctx.ours and portal.payment_required else "N",
        "DAYS": None,
        "LANGUAGE_ID": "ru",
        "LICENSE": "ru_project",
        "LICENSE_TYPE": "project",
        "LICENSE_FAMILY": "project",
    }


# --- events ----------------------------------------------------------------------------------
@method("event.bind")
def event_bind(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Bind a handler URL to an event (offline events and other users' auth need an admin)."""
    event = str(ci_get(params, "event", default="") or "").upper()
    handler = str(ci_get(params, "handler", default="") or "")
    if not _EVENT_RE.match(event):
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    if not _URL_RE.match(handler):
        raise RestError("WRONG_HANDLER_URL", "Wrong handler URL", 400)
    event_type = str(ci_get(params, "event_type", default="online") or "online").lower()
    auth_type = ci_get(params, "auth_type")
    auth_type = str(ctx.user.id) if auth_type in (None, "") else str(auth_type)
    if event_type == "offline" or auth_type not in ("0", str(ctx.user.id)):
        ctx.require_admin()
    with ctx.state.lock:
        for bound in ctx.portal.handlers:
            if bound["client_id"] == ctx.client_id and bound["event"] == event and bound["handler"] == handler:
                raise RestError("ERROR_CORE", "Handler already exists", 400)
        ctx.portal.handlers.append(
            {
                "id": ctx.portal.new_id(),
                "client_id": ctx.client_id,
                "event": event,
                "handler": handler,
                "auth_type": auth_type,
                "offline": 1 if event_type == "offline" else 0,
                "user_id": ctx.user.id,
                "time": time.time(),
            }
        )
    return True


@method("event.get")
def event_get(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Handlers bound by this app."""
    with ctx.state.lock:
        return [
            {
                "event": h["event"],
                "handler": h["handler"],
                "auth_type": h["auth_type"],
                "offline": h["offline"],
            }
            for h in ctx.portal.handlers
            if h["client_id"] == ctx.client_id
        ]


@method("event.unbind")
def event_unbind(ctx: Ctx, params: dict[str, Any]) -> dict[str, int]:
    """Remove matching handlers; answers how many went."""
    event = str(ci_get(params, "event", default="") or "").upper()
    handler = ci_get(params, "handler")
    auth_type = ci_get(params, "auth_type")
    with ctx.state.lock:
        keep, removed = [], 0
        for h in ctx.portal.handlers:
            hit = (
                h["client_id"] == ctx.client_id
                and h["event"] == event
                and (handler in (None, "") or h["handler"] == handler)
                and (auth_type in (None, "") or h["auth_type"] == str(auth_type))
            )
            if hit:
                removed += 1
            else:
                keep.append(h)
        ctx.portal.handlers[:] = keep
    return {"count": removed}


# --- placements ------------------------------------------------------------------------------
@method("placement.bind")
def placement_bind(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Bind a widget handler (admin only; binding the same pair again is a no-op)."""
    ctx.require_admin()
    placement = str(ci_get(params, "PLACEMENT", default="") or "").upper()
    handler = str(ci_get(params, "HANDLER", default="") or "")
    if not placement:
        raise RestError("ERROR_PLACEMENT_NOT_FOUND", "Placement not found", 400)
    if not _URL_RE.match(handler):
        raise RestError("ERROR_WRONG_HANDLER_URL", "Wrong handler URL", 400)
    with ctx.state.lock:
        for bound in ctx.portal.placements:
            if bound["client_id"] == ctx.client_id and (bound["placement"], bound["handler"]) == (
                placement,
                handler,
            ):
                return True
        ctx.portal.placements.append(
            {
                "client_id": ctx.client_id,
                "placement": placement,
                "handler": handler,
                "title": str(ci_get(params, "TITLE", default="") or ""),
                "description": str(ci_get(params, "DESCRIPTION", default="") or ""),
                "options": ci_get(params, "OPTIONS", default={}) or {},
                "langAll": ci_get(params, "LANG_ALL", default={}) or {},
            }
        )
    return True


@method("placement.get")
def placement_get(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Placements bound by this app (admin only)."""
    ctx.require_admin()
    with ctx.state.lock:
        return [
            {k: v for k, v in p.items() if k != "client_id"}
            for p in ctx.portal.placements
            if p["client_id"] == ctx.client_id
        ]


@method("placement.unbind")
def placement_unbind(ctx: Ctx, params: dict[str, Any]) -> dict[str, int]:
    """Remove placements of this app by code (and handler if given)."""
    ctx.require_admin()
    placement = str(ci_get(params, "PLACEMENT", default="") or "").upper()
    handler = ci_get(params, "HANDLER")
    with ctx.state.lock:
        before = len(ctx.portal.placements)
        ctx.portal.placements[:] = [
            p
            for p in ctx.portal.placements
            if not (
                p["client_id"] == ctx.client_id
                and p["placement"] == placement
                and (handler in (None, "") or p["handler"] == handler)
            )
        ]
        return {"count": before - len(ctx.portal.placements)}
