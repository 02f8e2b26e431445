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


# --- The rest of the JSON API (issue 11 §4): bodies of the admin, bot, dialogs, session, task and event routes.
# Where an answer is a report whose keys grow with the product (status, run reports), the model names the
# keys clients rely on and allows more (`extra="allow"`): the document stays true as reports gain fields.

Open = ConfigDict(extra="allow")


class Health(BaseModel):
    """GET /health and /health/ready."""

    status: Literal["healthy", "ready"]
    service: str
    base_path: str


class Unavailable(Error):
    """GET /health/ready when the database cannot be used."""

    status: Literal["unavailable"]
    base_path: str


class SessionUser(BaseModel):
    """The verified user of a session."""

    id: int
    name: str
    first_name: str
    last_name: str
    is_admin: bool


class PortalRef(BaseModel):
    """The portal a session belongs to."""

    member_id: str
    domain: str


class Alert(BaseModel):
    """Something the portal's admin must act on (re-connect an account, …), with words in the user's language."""

    model_config = Open

    code: str
    provider: str
    message: str


class SessionCreate(BaseModel):
    """POST /api/session: a fresh Bitrix24 auth from the frame SDK (`AUTH_ID`, `DOMAIN` are accepted too)."""

    model_config = ConfigDict(extra="allow")

    access_token: Annotated[str, Field(min_length=1)]
    member_id: Annotated[str, Field(min_length=1)]
    domain: Annotated[str, Field(min_length=1)]


class CookieSessionRequest(BaseModel):
    """POST /api/session/cookie: any JSON object (a JSON body needs a CORS preflight, which is never granted)."""

    model_config = ConfigDict(extra="allow")


class OpenApiDocument(BaseModel):
    """GET /api/openapi.json: this document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict
    paths: dict


class Session(BaseModel):
    """POST /api/session and /api/session/cookie: a new bearer token."""

    token: str
    expires_at: int
    user: SessionUser


class CurrentUser(BaseModel):
    """GET /api/current-user (and the seeds' /api/users/current)."""

    user: SessionUser
    portal: PortalRef
    alerts: list[Alert]


class AccountStatus(BaseModel):
    """A connected outside account (never its tokens)."""

    connected: bool
    account: str | None
    status: str | None
    fallback: bool | None = Field(None, description="the portal's: the server-wide YANDEX token stands in")


class Integrations(BaseModel):
    """GET /api/integrations, DELETE /api/integrations/yandex."""

    yandex: AccountStatus
    yandex_personal: AccountStatus


class YandexConnect(BaseModel):
    """POST /api/integrations/yandex/connect."""

    model_config = ConfigDict(extra="ignore")

    scope: Literal["portal", "personal"] = "portal"
    lang: str | None = None


class ScopeQuery(BaseModel):
    """Query of DELETE /api/integrations/yandex."""

    scope: Literal["portal", "personal"] = "portal"


class ConnectLinkAnswer(BaseModel):
    """A single-use start URL to open in a browser window."""

    url: str
    expires_in: int
    scope: str | None = None


class AdminTokenStatus(BaseModel):
    """GET /api/portal/admin-token: the portal's own API token, never its value."""

    issued: bool
    issued_at: int | None
    expires_at: int | None
    expired: bool


class AdminTokenIssued(BaseModel):
    """POST /api/portal/admin-token: the value, shown once."""

    token: str
    issued_at: int
    expires_at: int


class AdminTokenRevoked(AdminTokenStatus):
    """DELETE /api/portal/admin-token."""

    revoked: bool


class PortalTokenRevoked(BaseModel):
    """DELETE /api/admin/portal-token."""

    portal: str
    revoked: bool


class Connection(BaseModel):
    """One row of the Connections card (a credential, or the employees' credentials summed up)."""

    model_config = Open

    provider: str
    scope: str
    status: str | None


class Connections(BaseModel):
    """GET /api/portal/connections."""

    connections: list[Connection]
    now: int


class CredentialProblem(BaseModel):
    """A credential an operator must look at (needs re-authorisation, or no key decrypts it)."""

    id: int
    provider: str
    account: str
    subject: str
    portal_id: int | None
    last_error: str | None
    last_error_at: int | None


class PortalFacts(BaseModel):
    """Public facts about a portal (no secrets)."""

    id: int
    member_id: str
    domain: str
    status: str
    version: int | None
    bot_id: int | None
    admin_user_id: int | None
    uninstall_pending: bool


class AdminStatus(BaseModel):
    """GET /api/admin/status: the global token sees every portal (`portals` … `recent_runs`); a portal's token
    sees its own portal (`portal`, its `credentials` as a list, `alerts`). Both get `bot`."""

    model_config = Open

    bot: dict
    credentials: dict | list
    portals: dict[str, int] | None = None
    needs_reauth: list[CredentialProblem] | None = None
    broken: list[CredentialProblem] | None = None
    due_now: int | None = None
    expiring_without_refresh: list[dict] | None = None
    last_run: dict | None = None
    recent_runs: list[dict] | None = None
    portal: PortalFacts | None = None
    alerts: list[Alert] | None = None


class AccessToken(BaseModel):
    """GET /api/admin/tokens/{provider}/{account}: a currently valid access token (never the refresh token)."""

    model_config = Open

    provider: str
    account: str
    access_token: str
    expires_at: int | None


class AmoCrmAccount(BaseModel):
    """A registered amoCRM account (no tokens)."""

    model_config = Open

    account: str
    status: str


class AmoCrmAccounts(BaseModel):
    """GET /api/admin/amocrm/accounts."""

    accounts: list[AmoCrmAccount]


class AmoCrmRegister(BaseModel):
    """POST /api/admin/amocrm/accounts: `code`, or `access_token` + `refresh_token` (+ `expires_in`)."""

    model_config = ConfigDict(extra="ignore")

    subdomain: str
    code: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_in: int | None = None


class AmoCrmAuthorize(BaseModel):
    """POST /api/admin/amocrm/authorize."""

    model_config = ConfigDict(extra="ignore")

    lang: str | None = None


class BotSwitch(BaseModel):
    """POST /api/admin/enable|disable."""

    enabled: bool


class OpenLine(BaseModel):
    """One of the portal's Open Lines."""

    model_config = Open

    line_id: str
    name: str
    bot_attached: bool


class OpenLines(BaseModel):
    """GET /api/admin/lines."""

    items: list[OpenLine]


class BotAttach(BaseModel):
    """POST /api/admin/bot/attach."""

    model_config = ConfigDict(extra="ignore")

    line_id: Annotated[str, Field(pattern=r"^\d{1,12}$")] | Annotated[int, Field(ge=0, lt=10**12)]


class BotAttached(BaseModel):
    """The bot is the line's welcome bot."""

    line_id: str
    bot_id: int | None
    attached: bool


class LineSettings(BaseModel):
    """A line's working hours and what happens out of hours."""

    model_config = ConfigDict(extra="ignore")

    schedule: dict | list | None = Field(None, description="working hours per weekday (see docs)")
    out_of_hours_text: Annotated[str, Field(max_length=2000)] | None = None
    out_of_hours_action: Literal["queue", "finish"] | None = None


class BotSettingsChange(BaseModel):
    """PUT /api/admin/bot/settings: only the keys sent change."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool | None = None
    greeting: Annotated[str, Field(max_length=2000)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    transfer_mode: Literal["operator", "queue"] | None = None
    queue_id: str | int | None = None
    lines: dict[str, LineSettings] | None = None


class BotLine(BaseModel):
    """A line in the bot's settings."""

    model_config = Open

    line_id: str
    attached: bool


class BotSettings(BaseModel):
    """GET/PUT /api/admin/bot/settings."""

    model_config = Open

    enabled: bool
    greeting: str | None
    timezone: str | None
    transfer_mode: str
    queue_id: str | None
    lines: list[BotLine]


class SchemaCheck(BaseModel):
    """POST /api/admin/reinit_db."""

    ok: bool
    tables: list[str]
    missing: list[str]


class Dialog(BaseModel):
    """An Open Lines dialog."""

    model_config = Open

    chat_id: int
    status: str
    created_at: int | None


class DialogPage(BaseModel):
    """GET /api/dialogs."""

    items: list[Dialog]
    page: int
    per_page: int
    total: int


class DialogQuery(BaseModel):
    """Query of GET /api/dialogs (and /api/dialogs.csv)."""

    page: Annotated[int, Field(ge=1, le=100_000)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] = 20
    status: Literal["new", "transferred", "transfer_failed", "finished"] | None = None
    line_id: Annotated[str, Field(pattern=r"^\d{1,12}$")] | None = None
    q: Annotated[str, Field(max_length=100)] | None = None
    from_: str | None = Field(None, alias="from", description="unix time or ISO date")
    to: str | None = Field(None, description="unix time or ISO date")


class DialogMessage(BaseModel):
    """One message of a dialog."""

    model_config = Open

    text: str | None


class DialogDetail(Dialog):
    """GET /api/dialogs/{chat_id}."""

    messages: list[DialogMessage]
    handoff: dict | None


class Employee(BaseModel):
    """An active employee (the old bot's shape: ids are strings)."""

    id: str
    name: str
    last_name: str
    position: str


class Employees(BaseModel):
    """GET /api/users."""

    items: list[Employee]


class PortalQuery(BaseModel):
    """`portal=<member_id>`: which portal the global token acts on (a portal's own token needs none)."""

    portal: Annotated[str, Field(max_length=64)] | None = None


class RunParams(BaseModel):
    """Body (or query) of the task endpoints."""

    model_config = ConfigDict(extra="ignore")

    provider: Literal["bitrix24", "yandex", "amocrm"] | None = None
    limit: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    budget_s: Annotated[float, Field(ge=1)] | None = Field(None, description="capped by REFRESH_BUDGET_SECONDS")


class RefreshRun(BaseModel):
    """POST /tasks/refresh."""

    model_config = Open

    run_id: str
    due: int
    refreshed: int
    failed: int
    needs_reauth: int
    skipped_locked: int
    left: int
    duration_ms: int
    budget_exhausted: bool
    errors: dict[str, int]
    uninstalls: dict[str, int]


class EventsRun(BaseModel):
    """POST /tasks/process-events."""

    model_config = Open

    run_id: str
    claimed: int
    done: int
    failed: int
    left: int
    errors: dict[str, int]


class BitrixEvent(BaseModel):
    """A Bitrix24 event as it is posted (form fields with PHP bracket keys: `data[PARAMS][…]`, `auth[…]`)."""

    model_config = ConfigDict(extra="allow")

    event: Annotated[str, Field(min_length=1)] = Field(
        description="ONAPPINSTALL, ONAPPUPDATE, ONAPPUNINSTALL, ONIMBOTJOINCHAT, ONIMBOTMESSAGEADD, …"
    )


class EventAccepted(BaseModel):
    """An event's outcome (the shape depends on the event: installed, updated, uninstalled, accepted, …)."""

    model_config = Open

    status: str
