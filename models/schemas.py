"""Request and response bodies of the JSON API (pydantic); the OpenAPI document is generated from them.

Validation failures carry a stable reason per field (pydantic's error type, or ours for the custom
rules: `invalid_timezone`, `invalid_email`, `requires_start`, `broadcast_only`, …); the route layer turns
them into 422 `{"error": "validation_error", "message", "fields": {field: reason}}`.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

EMAIL = re.compile(r"^[^@\s,;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.[A-Za-z]{2,63}$")
ConferenceType = Literal["conference", "broadcast"]
WaitingRoomLevel = Literal["PUBLIC", "ORGANIZATION", "ADMINS"]
Status = Literal["scheduled", "incomplete", "cancelled"]
MAX_COHOSTS = 30
MAX_INVITEES = 100
MAX_VIEWERS = 200


def _stripped(value):
    return value.strip() if isinstance(value, str) else value


Name = Annotated[str, Field(min_length=1, max_length=255), BeforeValidator(_stripped)]
UserId = Annotated[int, Field(gt=0, lt=2**31)]


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))


def _no_nul(value):
    """PostgreSQL refuses NUL in text: refuse it here (a 422, not a 500)."""
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, str) and "\x00" in item for item in items):
        raise PydanticCustomError("invalid_character", "text must not contain NUL")
    return value


class ConferenceFields(BaseModel):
    """Fields a client may set (shared by create, full replace and partial update)."""

    model_config = ConfigDict(extra="ignore", str_max_length=5000)

    name: Name | None = None
    type: ConferenceType | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    start_date: date | None = Field(None, description="YYYY-MM-DD, in `timezone`")
    start_time: time | None = Field(None, description="HH:MM, in `timezone`")
    duration_minutes: Annotated[int, Field(ge=5, le=1440)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="IANA name; default the user's Bitrix24 profile TIME_ZONE"
    )
    cohosts: Annotated[list[str], Field(max_length=MAX_COHOSTS)] | None = Field(None, description="e-mails")
    create_calendar_event: bool | None = None
    invite_users: bool | None = None
    invitees: Annotated[list[UserId], Field(max_length=MAX_INVITEES)] | None = Field(
        None, description="Bitrix24 user ids (speakers for a broadcast)"
    )
    viewers: Annotated[list[UserId], Field(max_length=MAX_VIEWERS)] | None = Field(
        None, description="Bitrix24 user ids that get the watch link (broadcasts)"
    )
    live_stream_title: Annotated[str, Field(max_length=1024)] | None = None
    live_stream_description: Annotated[str, Field(max_length=2048)] | None = None
    waiting_room_level: WaitingRoomLevel | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _text_ok(cls, value):
        return _no_nul(value)

    @field_validator("start_date", mode="before")
    @classmethod
    def _date_format(cls, value):
        if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise PydanticCustomError("invalid_date", "use YYYY-MM-DD")
        return value or None

    @field_validator("start_date")
    @classmethod
    def _date_range(cls, value):
        if value is not None and not 2000 <= value.year <= 2100:
            raise PydanticCustomError("date_out_of_range", "the year must be between 2000 and 2100")
        return value

    @field_validator("start_time", mode="before")
    @classmethod
    def _time_format(cls, value):
        if isinstance(value, str) and not re.fullmatch(r"\d{2}:\d{2}", value):
            raise PydanticCustomError("invalid_time", "use HH:MM")
        return value or None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value):
        if value is None or value == "":
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("invalid_timezone", "not an IANA time zone") from None
        return value

    @field_validator("cohosts")
    @classmethod
    def _emails(cls, value):
        if value is None:
            return None
        emails = [str(e).strip().lower() for e in value]
        if any(not EMAIL.match(e) for e in emails):
            raise PydanticCustomError("invalid_email", "every cohost must be an e-mail address")
        return _unique(emails)

    @field_validator("invitees", "viewers")
    @classmethod
    def _ids(cls, value):
        return _unique(value) if value is not None else None


def check_rules(values: dict) -> None:
    """Rules across fields, on the merged state of a conference (raises PydanticCustomError)."""
    broadcast = values.get("type") == "broadcast"
    if not broadcast:
        for field in ("viewers", "live_stream_title", "live_stream_description"):
            if values.get(field):
                raise _FieldError(field, "broadcast_only", "only broadcasts have this")
    if values.get("start_time") and not values.get("start_date"):
        raise _FieldError("start_date", "requires_start", "a start time needs a start date")
    if values.get("create_calendar_event") and not (values.get("start_date") and values.get("start_time")):
        raise _FieldError("create_calendar_event", "requires_start", "a calendar event needs a date and a time")
    if values.get("invite_users") and not (values.get("invitees") or values.get("viewers")):
        raise _FieldError("invitees", "required_for_invite", "choose whom to invite")


class CrmBinding(BaseModel):
    """A CRM record a conference is bound to (made from that record's card tab)."""

    model_config = ConfigDict(extra="forbid")

    entity: Literal["deal", "contact", "company", "lead"]
    id: Annotated[int, Field(gt=0, lt=2**31, strict=True)]


class CrmContextQuery(BaseModel):
    """Query of GET /api/crm/context."""

    model_config = ConfigDict(extra="ignore")

    entity: Literal["deal", "contact", "company", "lead"]
    id: Annotated[int, Field(gt=0, lt=2**31)]


class CrmContext(BaseModel):
    """GET /api/crm/context: the record a card tab was opened on, and who is responsible for it."""

    entity: Literal["deal", "contact", "company", "lead"]
    id: int
    title: str
    responsible_id: int | None
    responsible_name: str = Field(description="'' when the portal did not name them")


class _FieldError(ValueError):
    """A cross-field rule failed on one field."""

    def __init__(self, field: str, reason: str, message: str):
        super().__init__(message)
        self.field = field
        self.reason = reason


class ConferenceCreate(ConferenceFields):
    """POST /api/conferences (and PUT: a full replacement)."""

    name: Name
    type: ConferenceType = "conference"
    duration_minutes: Annotated[int, Field(ge=5, le=1440)] = 60
    cohosts: Annotated[list[str], Field(max_length=MAX_COHOSTS)] = []
    create_calendar_event: bool = False
    invite_users: bool = False
    invitees: Annotated[list[UserId], Field(max_length=MAX_INVITEES)] = []
    viewers: Annotated[list[UserId], Field(max_length=MAX_VIEWERS)] = []
    waiting_room_level: WaitingRoomLevel = "PUBLIC"
    crm_binding: CrmBinding | None = Field(None, description="set at create only; kept by later updates")

    @model_validator(mode="after")
    def _rules(self):
        check_rules(self.model_dump())
        return self


class ConferencePatch(ConferenceFields):
    """PATCH /api/conferences/<id>: only the fields sent change (rules are checked on the result)."""


class Conference(BaseModel):
    """A conference as the API answers it."""

    id: int
    name: str
    type: ConferenceType
    description: str | None
    start_date: str | None
    start_time: str | None
    duration_minutes: int
    timezone: str | None
    cohosts: list[str]
    create_calendar_event: bool
    invite_users: bool
    invitees: list[int]
    viewers: list[int]
    live_stream_title: str | None
    live_stream_description: str | None
    waiting_room_level: WaitingRoomLevel
    link: str | None
    watch_url: str | None
    telemost_id: str | None
    calendar_event_id: int | None
    status: Status
    failed_step: str | None = Field(None, description="calendar | notifications | calendar_delete (then retry)")
    failure_code: str | None = None
    owner_id: int
    owner_name: str | None
    starts_at: int = Field(description="unix seconds (creation time for meetings without a date)")
    created_at: int
    updated_at: int
    crm_binding: CrmBinding | None = None


class ConferencePage(BaseModel):
    """GET /api/conferences."""

    items: list[Conference]
    page: int
    per_page: int
    total: int


class ConferenceQuery(BaseModel):
    """Query of GET /api/conferences."""

    model_config = ConfigDict(extra="ignore")

    page: Annotated[int, Field(ge=1, le=100000)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] = 20
    type: ConferenceType | None = None
    status: Status | None = None
    q: Annotated[str, Field(max_length=255)] | None = None
    when: Literal["upcoming", "past", "all"] = "all"
    crm: str | None = Field(None, description="`deal:42`: the conferences bound to that CRM record")

    @field_validator("q", mode="before")
    @classmethod
    def _text_ok(cls, value):
        return _no_nul(value)

    @field_validator("crm")
    @classmethod
    def _crm_filter(cls, value):
        if value is None:
            return None
        entity, sep, raw = value.partition(":")
        if not sep or entity not in ("deal", "contact", "company", "lead") or not re.fullmatch(r"[1-9]\d{0,9}", raw):
            raise PydanticCustomError("invalid_crm_filter", "crm filter is entity:id")
        if int(raw) >= 2**31:
            raise PydanticCustomError("invalid_crm_filter", "crm filter is entity:id")
        return value


class DeleteResult(BaseModel):
    """DELETE /api/conferences/<id> (and a retry that finished a deletion)."""

    id: int
    deleted: bool
    telemost: Literal["deleted", "cancelled_locally"]
    failed_step: str | None = None


class PortalUser(BaseModel):
    """An employee from user.get."""

    id: int
    name: str
    first_name: str
    last_name: str
    position: str
    email: str | None


class PortalUserPage(BaseModel):
    """GET /api/bitrix/users."""

    items: list[PortalUser]
    page: int
    per_page: int
    total: int


class UserQuery(BaseModel):
    """Query of GET /api/bitrix/users."""

    model_config = ConfigDict(extra="ignore")

    q: Annotated[str, Field(max_length=100)] = ""
    page: Annotated[int, Field(ge=1, le=1000)] = 1

    @field_validator("q", mode="before")
    @classmethod
    def _text_ok(cls, value):
        return _no_nul(value)


class TelemostAccount(BaseModel):
    """GET /api/telemost/account: whose Yandex account will organise this user's meetings."""

    connected: bool
    personal: bool
    account: str | None
    restricted: bool = Field(description="the account answered ApiRestrictedToOrganizations: not Yandex 360")
    needs_reconnect: bool = False


class Error(BaseModel):
    """Every error answer."""

    error: str
    message: str


class ValidationFailure(Error):
    """422: which fields failed and why (a stable reason code each)."""

    fields: dict[str, str]


def field_reasons(exc: ValidationError | _FieldError) -> dict[str, str]:
    """{field: reason} from a pydantic error (first reason per field)."""
    if isinstance(exc, _FieldError):
        return {exc.field: exc.reason}
    out: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            out.setdefault(ctx_error.field, ctx_error.reason)
            continue
        loc = [str(p) for p in error.get("loc", ()) if not isinstance(p, int)]
        out.setdefault(loc[0] if loc else "body", str(error.get("type", "invalid")))
    return out


FieldError = _FieldError
