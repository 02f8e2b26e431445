"""Portal REST methods: calendar.event.* (errors are HTTP 400 with an empty `error` code, as documented)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .forms import as_list, ci_get, strip_secrets, truthy
from .rest import Ctx, method
from .shapes import RestError
from .users import TIME_ZONE

TYPES = ("user", "group", "company_calendar")
_OPTIONAL_TEXT = (
    "description",
    "location",
    "color",
    "text_color",
    "accessibility",
    "importance",
    "private_event",
    "section",
)


def _missing(method_name: str, param: str) -> RestError:
    return RestError("", f'The required parameter "{param}" for the method "{method_name}" is not set', 400)


def _zone(name: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(name)) if name else ZoneInfo(TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(TIME_ZONE)


def _moment(method_name: str, param: str, value: Any, zone: ZoneInfo) -> datetime:
    text = str(value).strip()
    moment: datetime | None = None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y"):
            try:
                moment = datetime.strptime(text, fmt)  # naive: the zone is attached below
                break
            except ValueError:
                continue
    if moment is None:
        raise RestError("", f'Invalid value of the parameter "{param}" for the method "{method_name}"', 400)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _times(method_name: str, params: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """from/to (ISO with offset, plain + timezone_*, or *_ts) -> aware datetimes and zone names."""
    tz_from = ci_get(params, "timezone_from") or (current or {}).get("tz_from") or TIME_ZONE
    tz_to = ci_get(params, "timezone_to") or tz_from
    out: dict[str, Any] = {}
    for key, zone_name in (("from", tz_from), ("to", tz_to)):
        stamp = ci_get(params, f"{key}_ts")
        raw = ci_get(params, key)
        zone = _zone(zone_name)
        if stamp not in (None, ""):
            out[key] = datetime.fromtimestamp(int(stamp), zone)
        elif raw not in (None, ""):
            out[key] = _moment(method_name, key, raw, zone)
    if "to" not in out and "from" in out and current is None:
        out["to"] = out["from"]
    out["tz_from"], out["tz_to"] = str(tz_from), str(tz_to)
    return out


def _attendees(params: dict[str, Any], host: int) -> list[int]:
    ids: list[int] = [host]
    for value in as_list(ci_get(params, "attendees")):
        try:
            uid = int(value)
        except (TypeError, ValueError):
            continue
        if uid not in ids:
            ids.append(uid)
    return ids


def row(event: dict[str, Any]) -> dict[str, Any]:
    """Calendar entry as calendar.event.getbyid / calendar.event.get return it."""
    fmt = "%d.%m.%Y" if event["skip_time"] else "%d.%m.%Y %H:%M:%S"
    start, end = event["from"], event["to"]
    return {
        "ID": str(event["id"]),
        "PARENT_ID": str(event["id"]),
        "NAME": event["name"],
        "DESCRIPTION": event.get("description", ""),
        "DATE_FROM": start.strftime(fmt),
        "DATE_TO": end.strftime(fmt),
        "TZ_FROM": event["tz_from"],
        "TZ_TO": event["tz_to"],
        "DATE_FROM_TS_UTC": str(int(start.timestamp())),
        "DATE_TO_TS_UTC": str(int(end.timestamp())),
        "DT_SKIP_TIME": "Y" if event["skip_time"] else "N",
        "CAL_TYPE": event["type"],
        "OWNER_ID": str(event["owner_id"]),
        "CREATED_BY": str(event["host"]),
        "SECTION_ID": str(event.get("section") or "1"),
        "IS_MEETING": event["is_meeting"],
        "MEETING_HOST": str(event["host"]),
        "MEETING_STATUS": "H",
        "MEETING": event.get("meeting") or {},
        "ATTENDEE_LIST": [
            {"id": uid, "entryId": str(event["id"]), "status": "H" if uid == event["host"] else "Q"}
            for uid in event["attendees"]
        ],
        "LOCATION": event.get("location", ""),
        "REMIND": event.get("remind") or [],
        "RRULE": event.get("rrule") or "",
        "ACCESSIBILITY": event.get("accessibility") or "busy",
        "IMPORTANCE": event.get("importance") or "normal",
        "PRIVATE_EVENT": event.get("private_event") or "N",
        "COLOR": event.get("color", ""),
        "TEXT_COLOR": event.get("text_color", ""),
        "CRM_FIELDS": event.get("crm_fields") or [],
    }


def _apply_optional(event: dict[str, Any], params: dict[str, Any]) -> None:
    for key in _OPTIONAL_TEXT:
        value = ci_get(params, key)
        if value is not None:
            event[key] = str(value)
    for key in ("remind", "rrule", "meeting", "crm_fields"):
        value = ci_get(params, key)
        if value is not None:
            event[key] = value
    if ci_get(params, "skip_time") is not None:
        event["skip_time"] = truthy(ci_get(params, "skip_time"))


@method("calendar.event.add")
def event_add(ctx: Ctx, params: dict[str, Any]) -> int:
    """Create an entry; the caller becomes MEETING_HOST."""
    name = "calendar.event.add"
    cal_type = str(ci_get(params, "type", default="") or "")
    if not cal_type:
        raise _missing(name, "type")
    if cal_type not in TYPES:
        raise RestError("", f'Invalid value of the parameter "type" for the method "{name}"', 400)
    owner = ci_get(params, "ownerId")
    if cal_type != "company_calendar" and owner in (None, ""):
        raise _missing(name, "ownerId")
    title = str(ci_get(params, "name", default="") or "").strip()
    if not title:
        raise _missing(name, "name")
    if ci_get(params, "from") in (None, "") and ci_get(params, "from_ts") in (None, ""):
        raise _missing(name, "from")
    times = _times(name, params, None)
    is_meeting = truthy(ci_get(params, "is_meeting"))
    event: dict[str, Any] = {
        "type": cal_type,
        "owner_id": int(owner) if str(owner).isdigit() else 0,
        "name": title,
        "from": times["from"],
        "to": times["to"],
        "tz_from": times["tz_from"],
        "tz_to": times["tz_to"],
        "skip_time": False,
        "is_meeting": is_meeting,
        "host": ctx.user.id,
        "attendees": _attendees(params, ctx.user.id) if is_meeting else [ctx.user.id],
        "client_id": ctx.client_id,
        "created": time.time(),
    }
    _apply_optional(event, params)
    with ctx.state.lock:
        event["id"] = ctx.portal.new_id()
        event["params"] = strip_secrets(params)
        ctx.portal.calendar[event["id"]] = event
    return event["id"]


def _find(ctx: Ctx, method_name: str, params: dict[str, Any]) -> dict[str, Any]:
    raw = ci_get(params, "id")
    if raw in (None, ""):
        raise _missing(method_name, "id")
    try:
        event = ctx.portal.calendar.get(int(raw))
    except (TypeError, ValueError):
        event = None
    if event is None:
        raise RestError("", f"Event with id {raw} not found", 400)
    return event


@method("calendar.event.update")
def event_update(ctx: Ctx, params: dict[str, Any]) -> int:
    """Change an entry; is_meeting=Y without attendees clears them, no is_meeting keeps them."""
    name = "calendar.event.update"
    for required in ("id", "type", "ownerId"):
        if ci_get(params, required) in (None, "") and not (
            required == "ownerId" and ci_get(params, "type") == "company_calendar"
        ):
            raise _missing(name, required)
    with ctx.state.lock:
        event = _find(ctx, name, params)
        if ctx.user.id != event["host"] and str(ci_get(params, "host", default="")) != str(event["host"]):
            # A non-organizer edits only by naming the current organizer; the organizer never changes (§4.2).
            raise RestError("", f'The parameter "host" for the method "{name}" must be the organizer', 400)
        times = _times(name, params, event)
        for key in ("from", "to"):
            if key in times:
                event[key] = times[key]
        if ci_get(params, "timezone_from") or ci_get(params, "timezone_to"):
            event["tz_from"], event["tz_to"] = times["tz_from"], times["tz_to"]
        if event["to"] < event["from"]:
            event["to"] = event["from"]
        title = ci_get(params, "name")
        if title not in (None, ""):
            event["name"] = str(title)
        if ci_get(params, "is_meeting") is not None:
            event["is_meeting"] = truthy(ci_get(params, "is_meeting"))
            event["attendees"] = _attendees(params, event["host"]) if event["is_meeting"] else [event["host"]]
        elif ci_get(params, "attendees") is not None:
            event["attendees"] = _attendees(params, event["host"])
        _apply_optional(event, params)
        event["updated_by"], event["updated"] = ctx.user.id, time.time()
        return event["id"]


@method("calendar.event.delete")
def event_delete(ctx: Ctx, params: dict[str, Any]) -> bool:
    """Delete an entry."""
    with ctx.state.lock:
        event = _find(ctx, "calendar.event.delete", params)
        del ctx.portal.calendar[event["id"]]
        event["deleted"], event["deleted_by"] = time.time(), ctx.user.id
        ctx.portal.record(ctx.portal.calendar_deleted, event)
    return True


@method("calendar.event.getbyid")
def event_get_by_id(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """One entry by id."""
    with ctx.state.lock:
        return row(_find(ctx, "calendar.event.getbyid", params))


@method("calendar.event.get")
def event_get(ctx: Ctx, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries of a calendar (for a user: also meetings they attend), optionally within from..to."""
    name = "calendar.event.get"
    cal_type = str(ci_get(params, "type", default="") or "")
    if not cal_type:
        raise _missing(name, "type")
    owner = str(ci_get(params, "ownerId", default="") or "0")
    zone = _zone(None)
    lower = _moment(name, "from", ci_get(params, "from"), zone) if ci_get(params, "from") else None
    upper = _moment(name, "to", ci_get(params, "to"), zone) if ci_get(params, "to") else None
    if upper is not None and len(str(ci_get(params, "to")).strip()) <= 10:
        upper += timedelta(days=1)  # a date-only `to` includes that whole day
    with ctx.state.lock:
        events = list(ctx.portal.calendar.values())
    rows = []
    for event in sorted(events, key=lambda e: e["from"]):
        mine = event["type"] == cal_type and str(event["owner_id"]) == owner
        attending = cal_type == "user" and owner.isdigit() and int(owner) in event["attendees"]
        if not (mine or attending):
            continue
        if lower is not None and event["to"] < lower:
            continue
        if upper is not None and event["from"] > upper:
            continue
        rows.append(row(event))
    return rows
