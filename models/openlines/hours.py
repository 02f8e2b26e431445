"""Working hours of an Open Line: a weekly schedule in the portal's time zone."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.errors import ServiceError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def parse_schedule(raw) -> dict[str, list[list[str]]] | None:
    """Validate {"mon": [["09:00", "18:00"]], …}; None means open round the clock."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > len(DAYS):
        raise ServiceError("bad_schedule", status=400)
    out: dict[str, list[list[str]]] = {}
    for day, intervals in raw.items():
        if day not in DAYS or not isinstance(intervals, list) or len(intervals) > 8:
            raise ServiceError("bad_schedule", status=400, day=str(day)[:8])
        out[day] = []
        for interval in intervals:
            if (
                not isinstance(interval, list | tuple)
                or len(interval) != 2
                or not all(isinstance(t, str) and _TIME.match(t) for t in interval)
                or _minutes(interval[0]) >= _minutes(interval[1])
            ):
                raise ServiceError("bad_schedule", status=400, day=day)
            out[day].append([interval[0], interval[1]])
    return out


def timezone(name: str | None, default: str) -> ZoneInfo:
    """The zone by IANA name (the default when unknown)."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def valid_timezone(name: str) -> bool:
    """True for a known IANA zone name."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def is_open(schedule_json: str | None, zone: ZoneInfo, at: float) -> bool:
    """True when `at` (unix time) falls inside the schedule; no schedule = always open."""
    if not schedule_json:
        return True
    try:
        schedule = json.loads(schedule_json)
    except ValueError:
        return True
    if not isinstance(schedule, dict):
        return True
    local = datetime.fromtimestamp(at, zone)
    minute = local.hour * 60 + local.minute
    for start, end in schedule.get(DAYS[local.weekday()], []) or []:
        if _minutes(start) <= minute < _minutes(end):
            return True
    return False
