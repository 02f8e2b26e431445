"""What the portal's «Календарь» page shows: calendar entries and notifications, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..state import Portal
from .users import TIME_ZONE

_REMIND_UNITS = {"min": "мин", "hour": "ч", "day": "дн"}


def _when(moment: datetime, skip_time: bool) -> str:
    return moment.strftime("%d.%m.%Y" if skip_time else "%d.%m.%Y %H:%M")


def _stamp(value: float | None) -> str:
    return datetime.fromtimestamp(value, ZoneInfo(TIME_ZONE)).strftime("%d.%m.%Y %H:%M:%S") if value else ""


def _name(portal: Portal, user_id: Any) -> str:
    user = portal.find_user(user_id)
    return user.full_name if user is not None else f"#{user_id}"


def _reminders(value: Any) -> list[str]:
    items = value if isinstance(value, list) else []
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(f"{item.get('count', '')} {_REMIND_UNITS.get(str(item.get('type')), item.get('type', ''))}")
    return out


def _entry(portal: Portal, event: dict[str, Any], deleted: bool) -> dict[str, Any]:
    changed = event.get("deleted") if deleted else (event.get("updated") or event.get("created"))
    host = event["host"]
    return {
        "id": event["id"],
        "name": event["name"],
        "status": "deleted" if deleted else ("updated" if event.get("updated") else "created"),
        "changed": _stamp(changed),
        "sort": changed or 0,
        "from": _when(event["from"], event["skip_time"]),
        "to": _when(event["to"], event["skip_time"]),
        "tz": event["tz_from"],
        "calendar": f"{event['type']} {event['owner_id']}",
        "host": _name(portal, host),
        "attendees": [{"name": _name(portal, uid), "host": uid == host} for uid in event["attendees"]],
        "is_meeting": event["is_meeting"],
        "location": event.get("location", ""),
        "description": event.get("description", ""),
        "reminders": _reminders(event.get("remind")),
        "crm_fields": [str(f) for f in event.get("crm_fields") or []],
    }


def entries(portal: Portal) -> list[dict[str, Any]]:
    """Live and deleted calendar entries, the most recently changed first. Call under the state lock."""
    rows = [_entry(portal, e, False) for e in portal.calendar.values()]
    rows += [_entry(portal, e, True) for e in portal.calendar_deleted]
    return sorted(rows, key=lambda r: (r["sort"], r["id"]), reverse=True)


def notifications(portal: Portal) -> list[dict[str, Any]]:
    """Notifications sent through im.notify*, newest first. Call under the state lock."""
    return [
        {
            "id": n["id"],
            "to": _name(portal, n["user_id"]),
            "from": _name(portal, n["from_user_id"]),
            "message": n["message"],
            "tag": n["tag"],
            "time": _stamp(n["time"]),
        }
        for n in sorted(portal.notifications, key=lambda n: (n["time"], n["id"]), reverse=True)
    ]
