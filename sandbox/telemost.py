"""Fake Yandex Telemost API (cloud-api.yandex.net/v1/telemost-api), served at {base}/telemost-api.

Follows ../shared/specs/telemost.md: §1 `Authorization: OAuth <token>` (tokens of the fake Yandex OAuth),
§2–§3 conference create (201 with only `id`, `join_url` and `live_stream.watch_url`, §7a), GET, PATCH
(200 with the conference), §4 cohosts (GET list, PUT replace, PATCH add, DELETE `cohost_emails` — 204s),
§5 the error body `{"error","description","message","details"}`, §7a `NoSuchUserPrincipalsFound` with
HTTP 404 and `details.emails` joined by ';', `ForbiddenError`, `ApiRestrictedToOrganizations`.

Sandbox rules (knobs in /_sandbox/config):
- `telemost_personal_restricted`: personal accounts (a login without '@'; `sandbox.user` is one) get 403
  `ApiRestrictedToOrganizations`; an organisation account is minted with a login like `ivan@corp.example`;
- `telemost_live_stream_paid`: a live stream in create/PATCH gets 402 `PaymentRequiredToUseLiveStreams`;
- `telemost_delete`: DELETE /conferences/{id} answers "405" (not allowed), "404" (no such endpoint) or
  "204" (deleted);
- `telemost_forbidden`: every call gets 403 `ForbiddenError` (a token the API no longer accepts);
- `telemost_rate_burst` / `telemost_rate_per_second`: a leaky bucket per account, 429 above it.
Every address is a known Yandex account except those at `unknown.example`.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .faults import faulty
from .state import Bucket, State, YandexUser
from .yandex import token_owner

bp = Blueprint("telemost", __name__)
PREFIX = "/telemost-api"
UNKNOWN_DOMAIN = "unknown.example"
MAX_COHOSTS = 30
LEVELS = ("PUBLIC", "ORGANIZATION", "ADMINS")
STREAM_LEVELS = ("PUBLIC", "ORGANIZATION")
MAX_LOG = 5000


@dataclass
class Conference:
    """One meeting the fake holds."""

    id: str
    owner: str
    owner_uid: str
    waiting_room_level: str
    cohosts: list[str] = field(default_factory=list)
    live_stream: dict[str, Any] | None = None
    deleted: bool = False
    created: float = field(default_factory=time.time)

    @property
    def join_url(self) -> str:
        """Meeting link (§7a format)."""
        return f"https://telemost.yandex.ru/j/{self.id}"

    def full(self) -> dict[str, Any]:
        """GET/PATCH answer (§2)."""
        body: dict[str, Any] = {
            "id": self.id,
            "join_url": self.join_url,
            "access_level": self.waiting_room_level if self.waiting_room_level != "ADMINS" else "UNKNOWN",
            "waiting_room_level": self.waiting_room_level,
        }
        if self.live_stream is not None:
            body["live_stream"] = dict(self.live_stream)
        body.update(
            {
                "sip_uri_meeting": f"{int(self.id):020d}@sip.t.ya.ru",
                "sip_uri_telemost": "j@sip.t.ya.ru",
                "sip_id": self.id,
            }
        )
        return body

    def public(self) -> dict[str, Any]:
        """What GET /_sandbox/telemost/conferences lists."""
        return {
            "id": self.id,
            "join_url": self.join_url,
            "owner": self.owner,
            "cohosts": list(self.cohosts),
            "live_stream": dict(self.live_stream) if self.live_stream else None,
            "waiting_room_level": self.waiting_room_level,
            "deleted": self.deleted,
        }


class TelemostStore:
    """Conferences and per-account rate buckets of one sandbox."""

    def __init__(self) -> None:
        self.conferences: dict[str, Conference] = {}
        self.buckets: dict[str, Bucket] = {}
        self.requests: list[dict[str, Any]] = []

    def new_id(self) -> str:
        """All-digit id, 12 long (10–14 seen, §7a)."""
        while True:
            cid = str(secrets.randbelow(9 * 10**11) + 10**11)
            if cid not in self.conferences:
                return cid


_init_lock = threading.Lock()


def _state() -> State:
    return current_app.extensions["sandbox"]


def store(state: State) -> TelemostStore:
    """The Telemost store of this sandbox (created on first use, kept on the state)."""
    with _init_lock:
        found = getattr(state, "telemost", None)
        if found is None:
            found = TelemostStore()
            state.telemost = found  # type: ignore[attr-defined]
        return found


def account_email(user: YandexUser) -> str:
    """The account's address: an organisation login is an address already."""
    return user.login if "@" in user.login else user.email


def _error(status: int, error: str, description: str, message: str, details: dict | None = None) -> Response:
    response = jsonify({"error": error, "description": description, "message": message, "details": details or {}})
    response.status_code = status
    return response


def _not_found() -> Response:
    return _error(404, "ConferenceNotFound", "Conference not found.", "Видео встреча не найдена.")


def _bad(description: str) -> Response:
    return _error(400, "ValidationError", description, "Некорректный запрос.")


@bp.after_request
def _request_id(response: Response) -> Response:
    """Every answer carries the id support would ask for (§7a)."""
    response.headers["Yandex-Cloud-Request-ID"] = uuid.uuid4().hex
    return response


def _authorize() -> tuple[YandexUser | None, Response | None]:
    state = _state()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    with state.lock:
        telemost = store(state)
        telemost.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "x_request_id": request.headers.get("X-Request-ID"),
                "authorization_scheme": scheme,
                "time": time.time(),
            }
        )
        del telemost.requests[:-MAX_LOG]
    if scheme != "OAuth" or not token.strip():
        return None, _error(401, "UnauthorizedError", "Authorization header must be 'OAuth <token>'", "Не авторизован.")
    grant, user, status = token_owner(state, token.strip())
    if grant is None or user is None or status != "ok":
        return None, _error(401, "UnauthorizedError", "Invalid or expired token", "Не авторизован.")
    config = state.config
    if config.get("telemost_forbidden"):
        return None, _error(403, "ForbiddenError", "Access forbidden", "Доступ запрещён.")
    if config.get("telemost_personal_restricted") and "@" not in user.login:
        return None, _error(
            403,
            "ApiRestrictedToOrganizations",
            "API is restricted to organizations",
            "API Телемоста доступен пользователям Яндекс 360 для бизнеса.",
        )
    with state.lock:
        bucket = telemost.buckets.setdefault(user.id, Bucket())
        bucket.size = float(config.get("telemost_rate_burst", 30))
        bucket.drain = float(config.get("telemost_rate_per_second", 10.0))
        allowed = bucket.take()
    if not allowed:
        response = _error(429, "TooManyRequests", "Too many requests", "Слишком много запросов.")
        response.headers["Retry-After"] = "1"
        return None, response
    return user, None


def _json_object() -> tuple[dict[str, Any] | None, Response | None]:
    if not request.data:
        return {}, None
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None, _bad("Body must be a JSON object")
    return body, None


def _emails(raw: Any) -> tuple[list[str] | None, Response | None]:
    """A cohost list `[{"email"}]` → addresses, refusing malformed, too long or unknown ones."""
    if not isinstance(raw, list) or not all(isinstance(c, dict) and isinstance(c.get("email"), str) for c in raw):
        return None, _bad('cohosts must be a list of {"email": ...}')
    emails = [c["email"].strip().lower() for c in raw]
    return _checked(emails)


def _checked(emails: list[str]) -> tuple[list[str] | None, Response | None]:
    if len(emails) > MAX_COHOSTS:
        return None, _bad(f"At most {MAX_COHOSTS} cohosts")
    if any("@" not in e for e in emails):
        return None, _bad("cohost email is malformed")
    unknown = [e for e in emails if e.rsplit("@", 1)[1] == UNKNOWN_DOMAIN]
    if unknown:
        return None, _error(
            404,
            "NoSuchUserPrincipalsFound",
            "No such user principals found",
            "Пользователи не найдены.",
            {"emails": ";".join(unknown)},
        )
    return list(dict.fromkeys(emails)), None


def _live_stream(raw: Any, current: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Response | None]:
    if not isinstance(raw, dict):
        return None, _bad("live_stream must be an object")
    if _state().config.get("telemost_live_stream_paid"):
        return None, _error(
            402,
            "PaymentRequiredToUseLiveStreams",
            "Payment required to use live streams",
            "Для трансляций нужен платный тариф.",
        )
    stream = dict(
        current
        or {
            "watch_url": f"https://telemost.yandex.ru/live/{secrets.token_hex(16)}",
            "access_level": "PUBLIC",
            "title": "",
            "description": "",
        }
    )
    level = raw.get("access_level", stream["access_level"])
    if level not in STREAM_LEVELS:
        return None, _bad("live_stream.access_level must be PUBLIC or ORGANIZATION")
    title, description = raw.get("title", stream["title"]), raw.get("description", stream["description"])
    if not isinstance(title, str) or len(title) > 1024 or not isinstance(description, str) or len(description) > 2048:
        return None, _bad("live_stream.title ≤ 1024 and description ≤ 2048 characters")
    stream.update(access_level=level, title=title, description=description)
    return stream, None


def _level(body: dict[str, Any], default: str) -> tuple[str | None, Response | None]:
    level = body.get("waiting_room_level", body.get("access_level", default))
    if level not in LEVELS:
        return None, _bad("waiting_room_level must be PUBLIC, ORGANIZATION or ADMINS")
    return level, None


def _owned(user: YandexUser, conference_id: str) -> Conference | None:
    with _state().lock:
        conference = store(_state()).conferences.get(conference_id)
    if conference is None or conference.deleted or conference.owner_uid != user.id:
        return None
    return conference


@bp.post(f"{PREFIX}/conferences")
@faulty("telemost")
def create() -> Response:
    """POST /conferences → 201 {id, join_url[, live_stream{watch_url}]} (§3, §7a)."""
    user, refused = _authorize()
    if refused:
        return refused
    body, bad = _json_object()
    if bad:
        return bad
    level, bad = _level(body, "PUBLIC")
    if bad:
        return bad
    cohosts: list[str] = []
    if "cohosts" in body:
        cohosts, bad = _emails(body["cohosts"])
        if bad:
            return bad
    stream = None
    if "live_stream" in body:
        stream, bad = _live_stream(body["live_stream"], None)
        if bad:
            return bad
    state = _state()
    with state.lock:
        telemost = store(state)
        conference = Conference(telemost.new_id(), account_email(user), user.id, level, cohosts, stream)
        telemost.conferences[conference.id] = conference
    answer: dict[str, Any] = {"id": conference.id, "join_url": conference.join_url}
    if stream is not None:
        answer["live_stream"] = {"watch_url": stream["watch_url"]}
    response = jsonify(answer)
    response.status_code = 201
    return response


@bp.get(f"{PREFIX}/conferences/<conference_id>")
@faulty("telemost")
def read(conference_id: str) -> Response:
    """GET /conferences/{id} → 200 the full object, 404 ConferenceNotFound."""
    user, refused = _authorize()
    if refused:
        return refused
    conference = _owned(user, conference_id)
    if conference is None:
        return _not_found()
    with _state().lock:
        return jsonify(conference.full())


@bp.patch(f"{PREFIX}/conferences/<conference_id>")
@faulty("telemost")
def patch(conference_id: str) -> Response:
    """PATCH /conferences/{id}: only the fields sent change; 200 with the conference."""
    user, refused = _authorize()
    if refused:
        return refused
    conference = _owned(user, conference_id)
    if conference is None:
        return _not_found()
    body, bad = _json_object()
    if bad:
        return bad
    level, bad = _level(body, conference.waiting_room_level)
    if bad:
        return bad
    cohosts = conference.cohosts
    if "cohosts" in body:
        cohosts, bad = _emails(body["cohosts"])
        if bad:
            return bad
    stream = conference.live_stream
    if "live_stream" in body:
        stream, bad = _live_stream(body["live_stream"], conference.live_stream)
        if bad:
            return bad
    with _state().lock:
        conference.waiting_room_level, conference.cohosts, conference.live_stream = level, cohosts, stream
        return jsonify(conference.full())


@bp.delete(f"{PREFIX}/conferences/<conference_id>")
@faulty("telemost")
def delete(conference_id: str) -> Response:
    """DELETE /conferences/{id}: undocumented (§3, §7a): 405, 404 or 204 as `telemost_delete` says."""
    mode = str(_state().config.get("telemost_delete", "405"))
    if mode == "405":
        response = _error(405, "MethodNotAllowed", "Method not allowed", "Метод не поддерживается.")
        response.headers["Allow"] = "GET, PATCH"
        return response
    if mode == "404":
        return _error(404, "NotFound", "Resource not found", "Не найдено.")
    user, refused = _authorize()
    if refused:
        return refused
    conference = _owned(user, conference_id)
    if conference is None:
        return _not_found()
    with _state().lock:
        conference.deleted = True
    return Response(status=204)


@bp.route(f"{PREFIX}/conferences/<conference_id>/cohosts", methods=["GET", "PUT", "PATCH", "DELETE"])
@faulty("telemost")
def cohosts(conference_id: str) -> Response:
    """§4: GET (offset/limit) → 200 list; PUT replace, PATCH add, DELETE ?cohost_emails= → 204."""
    user, refused = _authorize()
    if refused:
        return refused
    conference = _owned(user, conference_id)
    if conference is None:
        return _not_found()
    if request.method == "GET":
        try:
            offset = int(request.args.get("offset", 0))
            limit = int(request.args.get("limit", 50))
        except ValueError:
            return _bad("offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= 256:
            return _bad("offset ≥ 0, 1 ≤ limit ≤ 256")
        with _state().lock:
            return jsonify({"cohosts": [{"email": e} for e in conference.cohosts[offset : offset + limit]]})
    if request.method == "DELETE":
        raw = request.args.get("cohost_emails", "")
        emails = [e.strip().lower() for e in raw.split(",") if e.strip()]
        if not emails or len(emails) > MAX_COHOSTS:
            return _bad(f"cohost_emails: 1 to {MAX_COHOSTS} comma-separated addresses")
        with _state().lock:
            conference.cohosts = [e for e in conference.cohosts if e not in emails]
        return Response(status=204)
    body, bad = _json_object()
    if bad:
        return bad
    emails, bad = _emails(body.get("cohosts"))
    if bad:
        return bad
    with _state().lock:
        if request.method == "PATCH":
            emails, bad = _checked(list(dict.fromkeys(conference.cohosts + emails)))
            if bad:
                return bad
        conference.cohosts = emails
    return Response(status=204)


@bp.route("/_sandbox/telemost/conferences", methods=["GET", "DELETE"])
def listing() -> Response:
    """Control API: every conference the fake holds (deleted ones flagged); DELETE forgets them all."""
    state = _state()
    with state.lock:
        if request.method == "DELETE":
            telemost = store(state)
            cleared = len(telemost.conferences)
            telemost.conferences.clear()
            telemost.requests.clear()
            telemost.buckets.clear()
            return jsonify({"cleared": cleared})
        items = sorted(store(state).conferences.values(), key=lambda c: c.created)
        return jsonify([c.public() for c in items])


@bp.get("/_sandbox/telemost/requests")
def requests_log() -> Response:
    """Control API: the API calls received (method, path, X-Request-ID), oldest first."""
    state = _state()
    with state.lock:
        return jsonify(list(store(state).requests))
