"""Conference service: a Telemost meeting, its row, a Bitrix24 calendar event and invitations, kept in step.

Order of a create (issue 8 §4): Telemost first; then the row; then the portal steps — the calendar event
(with the user's own Bitrix24 token, so the user is the organiser) and the notifications — in one
`batch` (≤ 50 commands: the event plus 49 notifications), so at most 2 portal round trips whatever the
number of invitees up to 49 (the second only when the user's time zone must be looked up).

A portal step that fails leaves the conference in place with `failed_step` (`calendar`,
`notifications`, `calendar_delete`) and the notifications still owed in `pending_notifications`;
`retry()` finishes exactly that. A Telemost failure leaves nothing behind: never a row without a
meeting, never a meeting the app forgot (an `Idempotency-Key` reserves the row first so a repeated
request waits for, and returns, the first result instead of making a second meeting).

No UI words here: notification and calendar texts come from the caller's `texts(key, **params)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic_core import from_json
from sqlalchemy.dialects.postgresql import aggregate_order_by

from database import Database, conference_totals, conferences, now, telemost_restrictions
from models import crm
from models.bitrix24 import (
    MAX_BATCH,
    PAGE_SIZE,
    Bitrix24Error,
    Bitrix24Unavailable,
    PortalClient,
    command_errors,
)
from models.errors import ServiceError
from models.integrations import Integrations
from models.portal import Portal, PortalService
from models.refresh import RefreshEngine
from models.schemas import ConferenceCreate, ConferenceQuery, FieldError
from models.telemost import (
    DELETE_UNSUPPORTED,
    DELETED,
    OrganizerToken,
    TelemostApi,
    TelemostClient,
    TelemostError,
)
from models.vault import PORTAL_SUBJECT, Vault, user_subject

log = logging.getLogger(__name__)

Texts = Callable[..., str]

CREATING = "creating"
SCHEDULED = "scheduled"
INCOMPLETE = "incomplete"
CANCELLED = "cancelled"

STEP_CALENDAR = "calendar"
STEP_NOTIFICATIONS = "notifications"
STEP_CALENDAR_DELETE = "calendar_delete"

INVITED, INVITED_VIEWER, RESCHEDULED, CANCELLED_NOTE = "invited", "invited_viewer", "rescheduled", "cancelled"
REMIND_MINUTES = 15
IDEMPOTENCY_WAIT_SECONDS = 10.0
STALE_RESERVATION_SECONDS = 120
USERS_CACHE_SECONDS = 60.0
TIMEZONE_CACHE_SECONDS = 3600.0
FALLBACK_TIMEZONE = "UTC"

_LIST_COLUMNS = [
    c for c in conferences.c if c.name not in ("search_name", "idempotency_key", "request_hash", "list_item")
]
_SELECT_OWNED = sa.select(*_LIST_COLUMNS, conferences.c.idempotency_key, conferences.c.request_hash).where(
    conferences.c.id == sa.bindparam("b_id"),
    conferences.c.portal_id == sa.bindparam("b_portal"),
    conferences.c.owner_id == sa.bindparam("b_owner"),
)


@dataclass(frozen=True)
class Actor:
    """Who acts: a verified user of an installed portal."""

    portal: Portal
    user_id: int
    user_name: str


# The list's items are written by the database from the same fields in the same order (migration 0006,
# LIST_ITEM_FIELDS): a field added here goes there too (test_storage compares the list with get()).
PUBLIC_FIELDS = (
    "id",
    "name",
    "type",
    "description",
    "start_date",
    "start_time",
    "duration_minutes",
    "timezone",
    "cohosts",
    "create_calendar_event",
    "invite_users",
    "invitees",
    "viewers",
    "live_stream_title",
    "live_stream_description",
    "waiting_room_level",
    "link",
    "watch_url",
    "telemost_id",
    "calendar_event_id",
    "status",
    "failed_step",
    "failure_code",
    "owner_id",
    "owner_name",
    "starts_at",
    "created_at",
    "updated_at",
    "crm_binding",
)
_JSON_FIELDS = ("cohosts", "invitees", "viewers")


def _json_list(value: str) -> list:
    # Most lists are empty: skip the parser for them.
    return [] if value == "[]" else json.loads(value)


def public(row) -> dict:
    """A row as the API answers it (schemas.Conference)."""
    return _public(dict(zip(row._fields, row, strict=True)))


def _public(m: dict) -> dict:
    out = {name: m[name] for name in PUBLIC_FIELDS}
    for name in _JSON_FIELDS:
        out[name] = _json_list(out[name])
    out["create_calendar_event"] = bool(out["create_calendar_event"])
    out["invite_users"] = bool(out["invite_users"])
    out["crm_binding"] = json.loads(out["crm_binding"]) if out["crm_binding"] else None
    return out


def request_hash(data: ConferenceCreate) -> str:
    """A digest of a create request, to tell a repeat from a different request under the same key."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _TtlCache:
    """A small process-local cache with expiry (employee lists, time zones)."""

    def __init__(self, ttl: float, max_items: int = 2000):
        self.ttl = ttl
        self.max_items = max_items
        self._items: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        """The value, or None when absent or expired."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def put(self, key, value) -> None:
        """Remember a value for `ttl` seconds."""
        with self._lock:
            if len(self._items) >= self.max_items:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)


class ConferenceService:
    """Create, list, change, delete and finish conferences for verified users."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        engine: RefreshEngine,
        portals: PortalService,
        integrations: Integrations,
        telemost: TelemostApi,
    ):
        self.db = db
        self.vault = vault
        self.engine = engine
        self.portals = portals
        self.integrations = integrations
        self.telemost = telemost
        self._users = _TtlCache(USERS_CACHE_SECONDS)
        self._zones = _TtlCache(TIMEZONE_CACHE_SECONDS)

    # ---- reading -------------------------------------------------------------------------------------

    def list(self, portal_id: int, owner_id: int, query: ConferenceQuery) -> dict:
        """One page of the owner's conferences: upcoming soonest first, past newest first."""
        return from_json(self.list_json(portal_id, owner_id, query))

    def list_json(self, portal_id: int, owner_id: int, query: ConferenceQuery) -> bytes:
        """`list()` as the API's JSON body (schemas.ConferencePage), each item written by the database."""
        search = (query.q or "").strip()
        binding = crm.stored(crm.parse_filter(query.crm)) if query.crm else None
        st = _list_statements(
            self.db.engine.dialect, bool(query.type), bool(query.status), bool(search), by_crm=binding is not None
        )
        ts = now()
        params = {"b_portal": portal_id, "b_owner": owner_id, "b_now": ts, "b_day_ago": ts - 86400}
        if query.type:
            params["b_type"] = query.type
        if query.status:
            params["b_status"] = query.status
        if binding is not None:
            params["b_crm"] = binding
        if search:
            term = search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params["b_q"] = f"%{term}%"
        offset, limit = (query.page - 1) * query.per_page, query.per_page
        page = {**params, "b_limit": limit, "b_offset": offset}
        # Counting is most of the work: each count runs only when the page cannot tell it. A page part that
        # stops short of `limit` after at least one item (or on the first page) ends the upcoming run, so
        # the number of upcoming conferences is then offset + items.
        with self.db.read_cursor() as conn:
            if query.when == "past":
                [(total, n_items, items)] = st.past_head.rows(conn, page)
            elif query.when == "upcoming":
                [(n_items, items)] = st.upcoming_part.rows(conn, page)
                if n_items < limit and (n_items or not offset):
                    total = offset + n_items
                else:
                    [(total,)] = st.upcoming_count.rows(conn, params)
            else:
                [(total, n_items, items)] = st.upcoming_head.rows(conn, page)
                if n_items < limit and offset + n_items < total:
                    if n_items or not offset:
                        n_up = offset + n_items
                    else:
                        [(n_up,)] = st.upcoming_count.rows(conn, params)
                    [(_n, more)] = st.past_part.rows(
                        conn, {**params, "b_limit": limit - n_items, "b_offset": max(0, offset - n_up)}
                    )
                    items = f"{items},{more}" if items and more else (items or more)
        return f'{{"items":[{items or ""}],"page":{query.page},"per_page":{query.per_page},"total":{total}}}'.encode()

    def _row(self, actor: Actor, conference_id: int):
        with self.db.read() as conn:
            row = conn.execute(
                _SELECT_OWNED, {"b_id": conference_id, "b_portal": actor.portal.id, "b_owner": actor.user_id}
            ).first()
        if row is None or row.status == CREATING:
            # Another user's or another portal's conference is indistinguishable from a missing one.
            raise ServiceError("conference_not_found", status=404)
        return row

    def get(self, actor: Actor, conference_id: int) -> dict:
        """One of the actor's conferences."""
        return public(self._row(actor, conference_id))

    # ---- accounts ------------------------------------------------------------------------------------

    def account(self, actor: Actor) -> dict:
        """Whose Yandex account organises this user's meetings, and whether it can (schemas.TelemostAccount)."""
        try:
            organizer = self.integrations.organizer_token(actor.portal.id, actor.user_id)
        except ServiceError as exc:
            if exc.code == "yandex_reconnect_required":
                return {
                    "connected": True,
                    "personal": bool(exc.params.get("personal")),
                    "account": None,
                    "restricted": False,
                    "needs_reconnect": True,
                }
            if exc.code == "yandex_not_connected":
                return {
                    "connected": False,
                    "personal": False,
                    "account": None,
                    "restricted": False,
                    "needs_reconnect": False,
                }
            raise
        return {
            "connected": True,
            "personal": organizer.personal,
            "account": organizer.account,
            "restricted": organizer.restricted,
            "needs_reconnect": False,
        }

    def _telemost(self, actor: Actor) -> TelemostClient:
        organizer = self.integrations.organizer_token(actor.portal.id, actor.user_id)
        return TelemostClient(
            self.telemost, organizer, refresh=self._refresh_yandex, on_restricted=self._mark_restricted
        )

    def _refresh_yandex(self, credential_id: int) -> str | None:
        cred = self.vault.get(credential_id)
        renewed = self.engine.after_expired_token(cred) if cred else None
        return renewed.access_token if renewed else None

    def _mark_restricted(self, organizer: OrganizerToken) -> None:
        if organizer.credential_id is None or organizer.restricted:
            return
        with self.db.write() as conn:
            exists = conn.execute(
                sa.select(telemost_restrictions.c.credential_id).where(
                    telemost_restrictions.c.credential_id == organizer.credential_id
                )
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(telemost_restrictions).values(credential_id=organizer.credential_id, restricted_at=now())
                )

    def _clear_restricted(self, organizer: OrganizerToken) -> None:
        if organizer.credential_id is not None and organizer.restricted:
            with self.db.write() as conn:
                conn.execute(
                    sa.delete(telemost_restrictions).where(
                        telemost_restrictions.c.credential_id == organizer.credential_id
                    )
                )

    def _portal_client(self, actor: Actor, own_only: bool = False) -> PortalClient:
        """The user's own Bitrix24 credential (stored at iframe open), else (unless `own_only`) the portal's.

        Calendar calls need the user's own token: the token's user becomes the event's organiser.
        """
        cred = self.vault.find("bitrix24", actor.portal.member_id, user_subject(actor.user_id))
        if cred is None or cred.status != "active":
            if own_only:
                raise ServiceError("bitrix_user_token_missing", status=409)
            cred = self.vault.find("bitrix24", actor.portal.member_id, PORTAL_SUBJECT)
        if cred is None:
            raise ServiceError("bitrix_not_connected", status=409)
        return self.portals.client(actor.portal, cred.id)

    def crm_context(self, actor: Actor, entity: str, record_id: int) -> dict:
        """The CRM record's title and responsible person, read with the user's own token (their rights)."""
        # Never the portal's (admin) credential: it would show records the user may not see.
        return crm.context(self._portal_client(actor, own_only=True), entity, record_id)

    # ---- create --------------------------------------------------------------------------------------

    def create(
        self, actor: Actor, data: ConferenceCreate, texts: Texts, idempotency_key: str | None = None
    ) -> tuple[dict, bool]:
        """Make the meeting, the row, the calendar event and the invitations; returns (conference, replayed)."""
        telemost = self._telemost(actor)
        timezone = data.timezone
        if data.start_date and not timezone:
            timezone = self._user_timezone(actor, self._portal_client(actor))
        starts_at, ends_at = _span(data.start_date, data.start_time, data.duration_minutes, timezone)
        stream = _stream(data) if data.type == "broadcast" else None
        reserved_id = None
        if idempotency_key:
            first, reserved_id = self._reserve(actor, idempotency_key, request_hash(data))
            if first is not None:
                return first, True
        try:
            meeting = telemost.create(
                waiting_room_level=data.waiting_room_level, cohosts=data.cohosts, live_stream=stream
            )
        except BaseException:
            if reserved_id is not None:
                with self.db.write() as conn:
                    conn.execute(sa.delete(conferences).where(conferences.c.id == reserved_id))
            raise
        self._clear_restricted(telemost.organizer)
        pending = _invitations(data, actor.user_id) if data.invite_users else []
        ts = now()
        values = {
            **_stored_fields(data, timezone, starts_at, ends_at),
            "telemost_id": meeting.id,
            "link": meeting.join_url,
            "watch_url": meeting.watch_url,
            "status": SCHEDULED,
            "pending_notifications": json.dumps(pending),
            "crm_binding": crm.stored(data.crm_binding.model_dump() if data.crm_binding else None),
            "updated_at": ts,
        }
        try:
            with self.db.write() as conn:
                if reserved_id is not None:
                    conn.execute(sa.update(conferences).where(conferences.c.id == reserved_id).values(**values))
                    conference_id = reserved_id
                else:
                    conference_id = conn.execute(
                        sa.insert(conferences).values(
                            portal_id=actor.portal.id,
                            owner_id=actor.user_id,
                            owner_name=actor.user_name[:255],
                            created_at=ts,
                            **values,
                        )
                    ).inserted_primary_key[0]
        except sa.exc.SQLAlchemyError:
            # Never a meeting the app forgot: take it back where Telemost allows (best effort).
            log.exception("conference row for telemost %s could not be written", meeting.id)
            try:
                telemost.delete(meeting.id)
            except TelemostError:
                log.warning("telemost %s could not be taken back", meeting.id)
            raise
        log.info("conference %s created (telemost %s) on portal %s", conference_id, meeting.id, actor.portal.member_id)
        row = self._row(actor, conference_id)
        if data.create_calendar_event or pending:
            row = self._portal_steps(actor, row, "add" if data.create_calendar_event else None, texts)
        return public(row), False

    def _reserve(self, actor: Actor, key: str, digest: str) -> tuple[dict | None, int | None]:
        """Find the first request with this key (waiting while it runs) or reserve the key for this one."""
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
        c = conferences.c
        while True:
            with self.db.write() as conn:
                row = conn.execute(
                    sa.select(*_LIST_COLUMNS, c.request_hash).where(
                        c.portal_id == actor.portal.id, c.owner_id == actor.user_id, c.idempotency_key == key
                    )
                ).first()
                if row is None:
                    ts = now()
                    try:
                        with conn.begin_nested():
                            new_id = conn.execute(
                                sa.insert(conferences).values(
                                    portal_id=actor.portal.id,
                                    owner_id=actor.user_id,
                                    owner_name=actor.user_name[:255],
                                    name="",
                                    search_name="",
                                    type="conference",
                                    duration_minutes=0,
                                    starts_at=ts,
                                    ends_at=ts,
                                    status=CREATING,
                                    idempotency_key=key,
                                    request_hash=digest,
                                    created_at=ts,
                                    updated_at=ts,
                                )
                            ).inserted_primary_key[0]
                        return None, new_id
                    except sa.exc.IntegrityError:
                        continue
                if row.request_hash != digest:
                    raise ServiceError("idempotency_key_reused", status=409)
                if row.status != CREATING:
                    return public(row), None
                if now() - row.created_at > STALE_RESERVATION_SECONDS:
                    # Its request died between the reservation and Telemost's answer: start over.
                    conn.execute(sa.delete(conferences).where(c.id == row.id, c.status == CREATING))
                    continue
            if time.monotonic() > deadline:
                raise ServiceError("conference_in_progress", status=409)
            time.sleep(0.1)

    def _user_timezone(self, actor: Actor, client: PortalClient) -> str:
        key = (actor.portal.id, actor.user_id)
        cached = self._zones.get(key)
        if cached:
            return cached
        try:
            profile = client.call("profile").result
            zone = str(profile.get("TIME_ZONE") or "") if isinstance(profile, dict) else ""
            ZoneInfo(zone)
        except (Bitrix24Error, ValueError, KeyError):
            zone = ""
        zone = zone or FALLBACK_TIMEZONE
        self._zones.put(key, zone)
        return zone

    # ---- update --------------------------------------------------------------------------------------

    def update(self, actor: Actor, conference_id: int, data: ConferenceCreate, texts: Texts) -> dict:
        """Apply a new state: Telemost first, then the row, then calendar and notifications."""
        row = self._row(actor, conference_id)
        if row.status == CANCELLED:
            raise ServiceError("conference_cancelled", status=409)
        if data.type != row.type:
            raise FieldError("type", "cannot_change", "a conference cannot become a broadcast or back")
        old = public(row)
        timezone = data.timezone or old["timezone"]
        if data.start_date and not timezone:
            timezone = self._user_timezone(actor, self._portal_client(actor))
        starts_at, ends_at = _span(
            data.start_date, data.start_time, data.duration_minutes, timezone, default_start=row.created_at
        )
        if row.telemost_id:
            telemost = self._telemost(actor)
            stream = _stream(data) if data.type == "broadcast" else None
            stream_changed = stream is not None and (
                data.live_stream_title != old["live_stream_title"]
                or data.live_stream_description != old["live_stream_description"]
            )
            level = data.waiting_room_level if data.waiting_room_level != old["waiting_room_level"] else None
            # Cohosts first: unknown addresses are the likeliest refusal, and then nothing has changed yet.
            if data.cohosts != old["cohosts"]:
                telemost.replace_cohosts(row.telemost_id, data.cohosts)
            if level or stream_changed:
                telemost.update(
                    row.telemost_id, waiting_room_level=level, live_stream=stream if stream_changed else None
                )
        moved = starts_at != row.starts_at or ends_at != row.ends_at
        pending = json.loads(row.pending_notifications)
        if data.invite_users:
            already = set(old["invitees"]) | set(old["viewers"]) if old["invite_users"] else set()
            fresh = _invitations(data, actor.user_id)
            pending += [n for n in fresh if n["user_id"] not in already]
            if moved:
                pending += [{"user_id": n["user_id"], "kind": RESCHEDULED} for n in fresh if n["user_id"] in already]
        calendar_changed = (
            moved
            or data.name != old["name"]
            or data.description != old["description"]
            or data.invitees != old["invitees"]
            or timezone != old["timezone"]
        )
        if data.create_calendar_event and row.calendar_event_id is None:
            calendar = "add"
        elif data.create_calendar_event and (calendar_changed or row.failed_step == STEP_CALENDAR):
            calendar = "update"
        elif not data.create_calendar_event and row.calendar_event_id is not None:
            calendar = "delete"
        else:
            calendar = None
        pending = list({(n["user_id"], n["kind"]): n for n in pending}.values())
        # Nothing left to do on the portal (say the calendar was switched off after it failed): settled.
        settled = {} if calendar or pending else {"failed_step": None, "failure_code": None, "status": SCHEDULED}
        with self.db.write() as conn:
            conn.execute(
                sa.update(conferences)
                .where(conferences.c.id == row.id)
                .values(
                    **_stored_fields(data, timezone, starts_at, ends_at),
                    pending_notifications=json.dumps(pending),
                    updated_at=now(),
                    **settled,
                )
            )
        row = self._row(actor, conference_id)
        if calendar or pending:
            row = self._portal_steps(actor, row, calendar, texts)
        return public(row)

    # ---- delete and retry ----------------------------------------------------------------------------

    def delete(self, actor: Actor, conference_id: int, texts: Texts) -> dict:
        """Delete the meeting where Telemost allows it (else cancel on our side), the event, and tell invitees."""
        row = self._row(actor, conference_id)
        if row.status != CANCELLED:
            outcome = DELETED
            if row.telemost_id:
                outcome = self._telemost(actor).delete(row.telemost_id)
            pending = []
            if row.invite_users:
                data = {"invitees": json.loads(row.invitees), "viewers": json.loads(row.viewers)}
                pending = [
                    {"user_id": uid, "kind": CANCELLED_NOTE}
                    for uid in dict.fromkeys(data["invitees"] + data["viewers"])
                    if uid != actor.user_id
                ]
            with self.db.write() as conn:
                conn.execute(
                    sa.update(conferences)
                    .where(conferences.c.id == row.id)
                    .values(
                        status=CANCELLED,
                        pending_notifications=json.dumps(pending),
                        failed_step=None,
                        # Without a Telemost id the row says the meeting itself is gone upstream.
                        telemost_id=None if outcome == DELETED else row.telemost_id,
                        updated_at=now(),
                    )
                )
            row = self._row(actor, conference_id)
        return self._finish_delete(actor, row, texts)

    def _finish_delete(self, actor: Actor, row, texts: Texts) -> dict:
        outcome = DELETED if row.telemost_id is None else DELETE_UNSUPPORTED
        if row.calendar_event_id is not None or json.loads(row.pending_notifications):
            row = self._portal_steps(actor, row, "delete" if row.calendar_event_id is not None else None, texts)
        if row.failed_step:
            return {"id": row.id, "deleted": False, "telemost": outcome, "failed_step": row.failed_step}
        with self.db.write() as conn:
            conn.execute(sa.delete(conferences).where(conferences.c.id == row.id))
        log.info("conference %s deleted (telemost: %s)", row.id, outcome)
        return {"id": row.id, "deleted": True, "telemost": outcome, "failed_step": None}

    def retry(self, actor: Actor, conference_id: int, texts: Texts) -> tuple[str, dict]:
        """Finish what failed: ("conference", conference) or ("deleted", delete result)."""
        row = self._row(actor, conference_id)
        if row.status == CANCELLED:
            return "deleted", self._finish_delete(actor, row, texts)
        if not row.failed_step and not json.loads(row.pending_notifications):
            return "conference", public(row)
        calendar = None
        if row.create_calendar_event:
            calendar = (
                "add" if row.calendar_event_id is None else ("update" if row.failed_step == STEP_CALENDAR else None)
            )
        elif row.calendar_event_id is not None:
            calendar = "delete"
        return "conference", public(self._portal_steps(actor, row, calendar, texts))

    # ---- portal steps ------------------------------------------------------------------------------------

    def _portal_steps(self, actor: Actor, row, calendar: str | None, texts: Texts):
        """Calendar add/update/delete and the pending notifications, in as few batches as possible."""
        notes = json.loads(row.pending_notifications)
        values: dict = {}
        failed, failure, client = None, None, None
        if calendar:
            try:
                client = self._portal_client(actor, own_only=True)
            except ServiceError as exc:
                # Not with someone else's token: they would become the organiser. Invitations still go.
                calendar, failed, failure = None, STEP_CALENDAR, exc.code
        try:
            client = client or self._portal_client(actor)
        except ServiceError as exc:
            client, failed, failure = None, failed or STEP_NOTIFICATIONS, failure or exc.code
        if client is not None:
            commands: list[tuple[str, tuple[str, dict]]] = []
            if calendar:
                commands.append(("calendar", _calendar_command(calendar, row, texts)))
            for note in notes:
                commands.append((f"n{note['user_id']}_{note['kind']}", _notify_command(row, note, texts)))
            left = list(notes)
            for start in range(0, len(commands), MAX_BATCH):
                chunk = dict(commands[start : start + MAX_BATCH])
                try:
                    answer = client.batch(chunk)
                except Bitrix24Error as exc:
                    failed = failed or (STEP_CALENDAR if "calendar" in chunk else STEP_NOTIFICATIONS)
                    failure = (
                        failure
                        or ("bitrix_unavailable" if isinstance(exc, Bitrix24Unavailable) else f"bitrix_{exc.code}")[:64]
                    )
                    continue
                errors = command_errors(answer)
                results = answer.get("result") or {}
                if "calendar" in chunk:
                    if "calendar" in errors or "calendar" not in results:
                        error = errors.get("calendar")
                        failed = STEP_CALENDAR
                        failure = f"calendar_{error.code or 'error'}"[:64] if error else "calendar_error"
                    elif calendar == "add":
                        event_id = results["calendar"]
                        values["calendar_event_id"] = int(event_id) if str(event_id).isdigit() else None
                    elif calendar == "delete":
                        values["calendar_event_id"] = None
                sent = {key for key in chunk if key != "calendar" and key in results and key not in errors}
                left = [n for n in left if f"n{n['user_id']}_{n['kind']}" not in sent]
                if any(key != "calendar" for key in errors):
                    failed = failed or STEP_NOTIFICATIONS
                    failure = failure or "notification_failed"
            notes = left
        if failed == STEP_CALENDAR and row.status == CANCELLED:
            failed = STEP_CALENDAR_DELETE
        if failed is None and notes:
            failed = STEP_NOTIFICATIONS
        status = row.status if row.status == CANCELLED else (INCOMPLETE if failed else SCHEDULED)
        values.update(
            failed_step=failed,
            failure_code=failure if failed else None,
            status=status,
            pending_notifications=json.dumps(notes),
            updated_at=now(),
        )
        with self.db.write() as conn:
            conn.execute(sa.update(conferences).where(conferences.c.id == row.id).values(**values))
        if failed:
            log.warning("conference %s: portal step %s failed (%s)", row.id, failed, failure)
        return self._row(actor, row.id)

    # ---- portal employees --------------------------------------------------------------------------------

    def users(self, actor: Actor, q: str, page: int) -> dict:
        """Active employees by name (user.get, 50 a page), cached briefly per portal."""
        key = (actor.portal.id, q.strip().casefold(), page)
        cached = self._users.get(key)
        if cached is not None:
            return cached
        flt: dict = {"ACTIVE": True, "USER_TYPE": "employee"}
        if q.strip():
            flt["NAME_SEARCH"] = q.strip()
        try:
            answer = self._portal_client(actor).list_page(
                "user.get", {"FILTER": flt, "sort": "LAST_NAME", "order": "ASC"}, start=(page - 1) * PAGE_SIZE
            )
        except Bitrix24Unavailable as exc:
            raise ServiceError("bitrix_unavailable", status=503) from exc
        except Bitrix24Error as exc:
            raise ServiceError("bitrix_refused", status=502, bitrix_code=exc.code) from exc
        items = []
        for user in answer.result if isinstance(answer.result, list) else []:
            if not isinstance(user, dict) or not str(user.get("ID", "")).isdigit():
                continue
            first, last = str(user.get("NAME") or ""), str(user.get("LAST_NAME") or "")
            items.append(
                {
                    "id": int(user["ID"]),
                    "name": f"{first} {last}".strip() or f"#{user['ID']}",
                    "first_name": first,
                    "last_name": last,
                    "position": str(user.get("WORK_POSITION") or ""),
                    "email": str(user.get("EMAIL") or "") or None,
                }
            )
        total = answer.total if isinstance(answer.total, int) else len(items)
        result = {"items": items, "page": page, "per_page": PAGE_SIZE, "total": total}
        self._users.put(key, result)
        return result


# ---- helpers ---------------------------------------------------------------------------------------------


class _Prepared:
    """A SELECT compiled once for a dialect and run on a driver cursor (`Database.read_cursor`).

    The history list is the app's hottest read: SQLAlchemy's per-execution work (cache key, parameter
    processing, Row objects, connection events) cost as much as the query itself. Driver errors are
    raised as SQLAlchemy's, like any other query's.
    """

    def __init__(self, statement, dialect):
        self.dialect = dialect
        self.compiled = statement.compile(dialect=dialect)
        self.sql = self.compiled.string
        self.names = self.compiled.positiontup if self.compiled.positional else None

    def rows(self, cursor, params: dict) -> list[tuple]:
        """Every row of the statement with these parameters, inside the cursor's transaction."""
        values = self.compiled.construct_params(params)
        args = tuple(values[name] for name in self.names) if self.names is not None else values
        dbapi = self.dialect.loaded_dbapi
        try:
            cursor.execute(self.sql, args)
            return cursor.fetchall()
        except dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                self.sql, None, exc, dbapi.Error, hide_parameters=True, dialect=self.dialect
            ) from exc


_statement_cache: dict[tuple, _ListStatements] = {}


class _ListStatements(NamedTuple):
    """The prepared statements of the history list for one dialect and filter combination."""

    upcoming_head: _Prepared  # (total, n, items) of the upcoming part of a page
    past_head: _Prepared  # (past total, n, items) of a page of past conferences
    upcoming_part: _Prepared  # (n, items)
    past_part: _Prepared  # (n, items)
    upcoming_count: _Prepared  # (n,)


def _list_statements(dialect, by_type: bool, by_status: bool, by_name: bool, by_crm: bool = False) -> _ListStatements:
    """The list's statements for a dialect and filter combination, prepared once: building and compiling
    SQLAlchemy statements per request costs more than running them.

    A page part is read in the order of ix_conferences_owner_start ((portal, owner, starts_at, id) with
    ends_at and status alongside, so the counts and the filters never visit the table) and stops at the
    page; the bounds on starts_at follow from 5 ≤ duration ≤ 1440 minutes, and each count scans only the
    index range it counts. A part comes back as one row (item count, items joined by commas), not fifty:
    each row fetched is a round of the driver releasing and taking back the GIL, which costs most under
    the threads of a busy worker.
    """
    key = (dialect.name, dialect.paramstyle, by_type, by_status, by_name, by_crm)
    found = _statement_cache.get(key)
    if found is not None:
        return found
    c = conferences.c
    where = [c.portal_id == sa.bindparam("b_portal"), c.owner_id == sa.bindparam("b_owner"), c.status != CREATING]
    if by_type:
        where.append(c.type == sa.bindparam("b_type"))
    if by_status:
        where.append(c.status == sa.bindparam("b_status"))
    if by_name:
        where.append(c.search_name.like(sa.bindparam("b_q"), escape="\\"))
    if by_crm:
        where.append(c.crm_binding == sa.bindparam("b_crm"))
    now_ = sa.bindparam("b_now", type_=sa.Integer)
    is_upcoming = [c.ends_at > now_, c.starts_at > sa.bindparam("b_day_ago", type_=sa.Integer)]
    is_past = [c.ends_at <= now_, c.starts_at <= now_]
    if by_type or by_status or by_name or by_crm:
        total = sa.select(sa.func.count()).where(*where).scalar_subquery()
    else:  # kept by the database on every write (migration 0006): no count of the whole history
        t = conference_totals.c
        kept = sa.select(t.total).where(t.portal_id == sa.bindparam("b_portal"), t.owner_id == sa.bindparam("b_owner"))
        total = sa.func.coalesce(kept.scalar_subquery(), 0)
    past_total = sa.select(sa.func.count()).where(*where, *is_past).scalar_subquery()
    upcoming = _page_part(dialect, [*where, *is_upcoming], descending=False)
    past = _page_part(dialect, [*where, *is_past], descending=True)
    statements = _ListStatements(
        upcoming_head=sa.select(total, upcoming.c.n, upcoming.c.joined),
        past_head=sa.select(past_total, past.c.n, past.c.joined),
        upcoming_part=sa.select(upcoming.c.n, upcoming.c.joined),
        past_part=sa.select(past.c.n, past.c.joined),
        upcoming_count=sa.select(sa.func.count()).where(*where, *is_upcoming),
    )
    _statement_cache[key] = _ListStatements(*(_Prepared(statement, dialect) for statement in statements))
    return _statement_cache[key]


def _page_part(dialect, where: list, *, descending: bool):
    """(n, items): one part of a page, its items' JSON joined by commas in page order."""
    c = conferences.c
    order = [c.starts_at.desc(), c.id.desc()] if descending else [c.starts_at.asc(), c.id.asc()]
    rows = (
        sa.select(c.list_item.label("item"), c.starts_at, c.id)
        .where(*where)
        .order_by(*order)
        .limit(sa.bindparam("b_limit", type_=sa.Integer))
        .offset(sa.bindparam("b_offset", type_=sa.Integer))
        .subquery("page_rows")
    )
    if dialect.name == "postgresql":
        keys = [rows.c.starts_at.desc(), rows.c.id.desc()] if descending else [rows.c.starts_at, rows.c.id]
        joined = sa.func.string_agg(rows.c.item, aggregate_order_by(sa.literal_column("','"), *keys))
    else:
        # SQLite aggregates the rows of an ordered, limited subquery in that order (it runs the subquery
        # as a co-routine); the ordering tests of the list would catch a version that does not.
        joined = sa.func.group_concat(rows.c.item, sa.literal_column("','"))
    return sa.select(sa.func.count().label("n"), joined.label("joined")).select_from(rows).subquery("page_part")


def _span(
    start_date, start_time, duration: int, timezone: str | None, default_start: int | None = None
) -> tuple[int, int]:
    """(starts_at, ends_at) in UTC seconds; a meeting without a date starts now (or at `default_start`)."""
    if start_date:
        moment = datetime.combine(start_date, start_time or datetime.min.time())
        zone = ZoneInfo(timezone or FALLBACK_TIMEZONE)
        starts = int(moment.replace(tzinfo=zone).astimezone(UTC).timestamp())
    else:
        starts = default_start if default_start is not None else now()
    return starts, starts + duration * 60


def _stream(data: ConferenceCreate) -> dict:
    return {
        "title": data.live_stream_title or data.name,
        "description": data.live_stream_description or "",
        "access_level": "PUBLIC",
    }


def _stored_fields(data: ConferenceCreate, timezone: str | None, starts_at: int, ends_at: int) -> dict:
    return {
        "name": data.name,
        "search_name": data.name.casefold()[:255],
        "type": data.type,
        "description": data.description,
        "start_date": data.start_date.isoformat() if data.start_date else None,
        "start_time": data.start_time.strftime("%H:%M") if data.start_time else None,
        "duration_minutes": data.duration_minutes,
        "timezone": timezone if data.start_date else data.timezone,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "cohosts": json.dumps(data.cohosts),
        "create_calendar_event": data.create_calendar_event,
        "invite_users": data.invite_users,
        "invitees": json.dumps(data.invitees),
        "viewers": json.dumps(data.viewers),
        "live_stream_title": data.live_stream_title,
        "live_stream_description": data.live_stream_description,
        "waiting_room_level": data.waiting_room_level,
    }


def _invitations(data: ConferenceCreate, owner_id: int) -> list[dict]:
    """Speakers (invitees) get the join link; a broadcast's viewers get the watch link."""
    notes = [{"user_id": uid, "kind": INVITED} for uid in data.invitees if uid != owner_id]
    speakers = set(data.invitees)
    if data.type == "broadcast":
        notes += [
            {"user_id": uid, "kind": INVITED_VIEWER} for uid in data.viewers if uid != owner_id and uid not in speakers
        ]
    return notes


def _when(row) -> str:
    if not row.start_date:
        return ""
    return f"{row.start_date} {row.start_time or ''} ({row.timezone or FALLBACK_TIMEZONE})".replace("  ", " ")


def _calendar_command(action: str, row, texts: Texts) -> tuple[str, dict]:
    if action == "delete":
        return "calendar.event.delete", {"id": row.calendar_event_id}
    zone = row.timezone or FALLBACK_TIMEZONE
    start = datetime.strptime(f"{row.start_date} {row.start_time}", "%Y-%m-%d %H:%M")
    end = start + timedelta(minutes=row.duration_minutes)
    params = {
        "type": "user",
        "ownerId": row.owner_id,
        "name": row.name,
        "from": start.strftime("%Y-%m-%d %H:%M:%S"),
        "to": end.strftime("%Y-%m-%d %H:%M:%S"),
        "timezone_from": zone,
        "timezone_to": zone,
        "description": "\n\n".join(filter(None, [row.description, texts("calendar.link", link=row.link or "")])),
        "location": row.link or "",
        "is_meeting": "Y",
        "attendees": [row.owner_id] + [u for u in json.loads(row.invitees) if u != row.owner_id],
        "meeting": {"notify": "Y", "reinvite": "N", "allow_invite": "N", "hide_guests": "N"},
        "remind": [{"type": "min", "count": REMIND_MINUTES}],
        "accessibility": "busy",
        "importance": "normal",
        "private_event": "N",
    }
    bound = crm.crm_fields(row.crm_binding)
    if bound:
        # Shown in the record's timeline and on the event: the meeting made from that card's tab.
        params["crm_fields"] = bound
    if action == "update":
        params["id"] = row.calendar_event_id
        return "calendar.event.update", params
    return "calendar.event.add", params


def _notify_command(row, note: dict, texts: Texts) -> tuple[str, dict]:
    kind = note["kind"]
    link = (
        row.watch_url
        if kind == INVITED_VIEWER
        or (
            row.type == "broadcast"
            and note["user_id"] in json.loads(row.viewers)
            and note["user_id"] not in json.loads(row.invitees)
        )
        else row.link
    )
    params = {"name": row.name, "link": link or "", "when": _when(row), "owner": row.owner_name or ""}
    return "im.notify.system.add", {
        "USER_ID": note["user_id"],
        "MESSAGE": texts(f"notify.{kind}", **params),
        "MESSAGE_OUT": texts(f"notify.{kind}.out", **params),
        # One live notification per conference and person: a new time or a cancellation replaces it.
        "TAG": f"telemost-conference-{row.id}-{note['user_id']}",
    }
