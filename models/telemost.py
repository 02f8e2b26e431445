"""Yandex Telemost API client (../shared/specs/telemost.md): conferences, cohosts, live streams.

`TelemostApi` makes one logical call with an explicit token: a timeout on every request, 429/5xx (and
connection failures that cannot have reached the server) retried with bounded backoff, and the API's
errors turned into `TelemostError` with stable codes. Each call sends an `X-Request-ID` and every error
keeps the upstream `Yandex-Cloud-Request-ID`, which an admin can quote to Yandex support (§7a).

`TelemostClient` acts for one organiser account (`OrganizerToken`): on a 401 it refreshes the vault
credential once through the token keeper (the same path cron uses) and retries.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from models.errors import ServiceError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cloud-api.yandex.net/v1/telemost-api"
WAITING_ROOM_LEVELS = ("PUBLIC", "ORGANIZATION", "ADMINS")
MAX_COHOSTS = 30
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 5.0

# Stable codes (words live in routes/i18n/conferences.py).
RESTRICTED = "telemost_restricted_to_organizations"
PAYMENT_REQUIRED = "telemost_live_stream_payment_required"
UNKNOWN_USERS = "telemost_unknown_users"
NOT_FOUND = "telemost_not_found"
RATE_LIMITED = "telemost_rate_limited"
UNAVAILABLE = "telemost_unavailable"
BAD_REQUEST = "telemost_bad_request"
RECONNECT = "yandex_reconnect_required"

DELETED = "deleted"
DELETE_UNSUPPORTED = "cancelled_locally"


class TelemostError(ServiceError):
    """The Telemost API refused or failed a call; `request_id` is Yandex's id for support."""

    def __init__(
        self,
        code: str,
        status: int,
        *,
        request_id: str | None = None,
        upstream: str = "",
        http_status: int | None = None,
        **params,
    ):
        super().__init__(code, status=status, request_id=request_id or "", **params)
        self.request_id = request_id
        self.upstream = upstream
        self.http_status = http_status


@dataclass(frozen=True)
class Conference:
    """What the API tells about a conference (only `id` and `join_url` are sure to be there)."""

    id: str
    join_url: str
    watch_url: str | None = None
    waiting_room_level: str | None = None
    live_stream: dict | None = None

    @classmethod
    def from_json(cls, body: dict) -> Conference:
        """Read a create/GET/PATCH answer."""
        stream = body.get("live_stream") if isinstance(body.get("live_stream"), dict) else None
        return cls(
            id=str(body["id"]),
            join_url=str(body["join_url"]),
            watch_url=str(stream["watch_url"]) if stream and stream.get("watch_url") else None,
            waiting_room_level=body.get("waiting_room_level"),
            live_stream=stream,
        )


def cohost_list(emails: list[str]) -> list[dict]:
    """The API's cohost shape `[{"email"}]`."""
    return [{"email": e} for e in emails]


def _classify(status: int, body: dict, request_id: str | None) -> TelemostError:
    error = str(body.get("error") or "")
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    common = {"request_id": request_id, "upstream": error, "http_status": status}
    if status == 401:
        return TelemostError(RECONNECT, 409, **common)
    if status == 402 or error == "PaymentRequiredToUseLiveStreams":
        return TelemostError(PAYMENT_REQUIRED, 402, **common)
    if error == "ApiRestrictedToOrganizations":
        return TelemostError(RESTRICTED, 409, **common)
    if status == 403:
        # ForbiddenError (and any other 403): the token is no longer good for this; Yandex's own
        # connector asks the user to log in again.
        return TelemostError(RECONNECT, 409, **common)
    if error == "NoSuchUserPrincipalsFound":
        emails = [e for e in str(details.get("emails") or "").split(";") if e]
        return TelemostError(UNKNOWN_USERS, 400, emails=emails, **common)
    if status == 404:
        return TelemostError(NOT_FOUND, 404, **common)
    if status == 429:
        return TelemostError(RATE_LIMITED, 429, **common)
    if status >= 500:
        return TelemostError(UNAVAILABLE, 503, **common)
    return TelemostError(BAD_REQUEST, 400, **common)


class TelemostApi:
    """Low-level calls with an explicit token."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        timeout: float,
        *,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def request(
        self, token: str, method: str, path: str, *, json: dict | None = None, params: dict | None = None
    ) -> tuple[int, dict]:
        """One logical call: (status, JSON body or {}); raises TelemostError on an error answer."""
        request_id = uuid.uuid4().hex
        headers = {"Authorization": f"OAuth {token}", "X-Request-ID": request_id, "Accept": "application/json"}
        idempotent = method != "POST"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.request(
                    method,
                    f"{self.base_url}{path}",
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                # A POST whose request may have reached Yandex is not repeated: a second meeting
                # could be made. A refused connection never reached it.
                reached = not isinstance(exc, requests.ConnectTimeout) and not _refused(exc)
                if last or (reached and not idempotent):
                    log.warning(
                        "telemost %s %s failed: %s (X-Request-ID %s)", method, path, type(exc).__name__, request_id
                    )
                    raise TelemostError(UNAVAILABLE, 503, request_id=None, upstream=type(exc).__name__) from None
                self._pause(attempt, None)
                continue
            upstream_id = response.headers.get("Yandex-Cloud-Request-ID")
            if response.status_code in RETRY_STATUSES and not last:
                self._pause(attempt, response.headers.get("Retry-After"))
                continue
            try:
                body = response.json() if response.content else {}
            except ValueError:
                body = None
            if response.status_code >= 400:
                error = _classify(response.status_code, body if isinstance(body, dict) else {}, upstream_id)
                log.warning(
                    "telemost %s %s → %s %s (Yandex-Cloud-Request-ID %s)",
                    method,
                    path,
                    response.status_code,
                    error.upstream or "-",
                    upstream_id,
                )
                raise error
            if body is None or not isinstance(body, dict):
                raise TelemostError(UNAVAILABLE, 503, request_id=upstream_id, upstream="bad_json")
            return response.status_code, body
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2**attempt) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, float(retry_after))
        self._sleep(min(delay, MAX_RETRY_AFTER))


def _refused(exc: Exception) -> bool:
    text = repr(exc)
    return "Connection refused" in text or "NewConnectionError" in text


@dataclass(frozen=True)
class OrganizerToken:
    """Whose Yandex account organises a meeting: a vault credential (or the single-portal env token)."""

    access_token: str
    credential_id: int | None
    account: str
    personal: bool
    restricted: bool = False


class TelemostClient:
    """Telemost calls for one organiser account, with request-time refresh through the token keeper."""

    def __init__(
        self,
        api: TelemostApi,
        organizer: OrganizerToken,
        refresh: Callable[[int], str | None] | None = None,
        on_restricted: Callable[[OrganizerToken], None] | None = None,
    ):
        self.api = api
        self.organizer = organizer
        self._token = organizer.access_token
        self._refresh = refresh
        self._on_restricted = on_restricted

    def _call(self, method: str, path: str, **kwargs) -> tuple[int, dict]:
        try:
            try:
                return self.api.request(self._token, method, path, **kwargs)
            except TelemostError as exc:
                if exc.http_status != 401 or self.organizer.credential_id is None or not self._refresh:
                    raise
                renewed = self._refresh(self.organizer.credential_id)
                if not renewed or renewed == self._token:
                    raise
                self._token = renewed
                return self.api.request(self._token, method, path, **kwargs)
        except TelemostError as exc:
            if exc.code == RESTRICTED and self._on_restricted:
                self._on_restricted(self.organizer)
            raise

    # ---- conferences -------------------------------------------------------------------------------

    def create(
        self, *, waiting_room_level: str = "PUBLIC", cohosts: list[str] | None = None, live_stream: dict | None = None
    ) -> Conference:
        """POST /conferences; a `live_stream` ({title, description, access_level}) makes a broadcast."""
        body: dict = {"waiting_room_level": waiting_room_level}
        if cohosts:
            body["cohosts"] = cohost_list(cohosts)
        if live_stream is not None:
            body["live_stream"] = live_stream
        _, answer = self._call("POST", "/conferences", json=body)
        if not answer.get("id") or not answer.get("join_url"):
            raise TelemostError(UNAVAILABLE, 503, upstream="bad_json")
        return Conference.from_json(answer)

    def get(self, conference_id: str) -> Conference:
        """GET /conferences/{id}."""
        _, answer = self._call("GET", f"/conferences/{_safe(conference_id)}")
        return Conference.from_json(answer)

    def update(
        self,
        conference_id: str,
        *,
        waiting_room_level: str | None = None,
        live_stream: dict | None = None,
        cohosts: list[str] | None = None,
    ) -> Conference | None:
        """PATCH /conferences/{id} with only the fields given (None = unchanged)."""
        body: dict = {}
        if waiting_room_level is not None:
            body["waiting_room_level"] = waiting_room_level
        if live_stream is not None:
            body["live_stream"] = live_stream
        if cohosts is not None:
            body["cohosts"] = cohost_list(cohosts)
        if not body:
            return None
        _, answer = self._call("PATCH", f"/conferences/{_safe(conference_id)}", json=body)
        return Conference.from_json(answer) if answer.get("id") else None

    def delete(self, conference_id: str) -> str:
        """Try DELETE (undocumented); `deleted`, or `cancelled_locally` when the API has no delete (404/405)."""
        try:
            self._call("DELETE", f"/conferences/{_safe(conference_id)}")
        except TelemostError as exc:
            if exc.http_status in (404, 405):
                return DELETE_UNSUPPORTED
            raise
        return DELETED

    # ---- cohosts -----------------------------------------------------------------------------------

    def cohosts(self, conference_id: str) -> list[str]:
        """GET /conferences/{id}/cohosts, every page."""
        emails: list[str] = []
        while True:
            _, answer = self._call(
                "GET", f"/conferences/{_safe(conference_id)}/cohosts", params={"offset": len(emails), "limit": 256}
            )
            page = [str(c.get("email")) for c in answer.get("cohosts") or [] if isinstance(c, dict)]
            emails.extend(page)
            if len(page) < 256:
                return emails

    def replace_cohosts(self, conference_id: str, emails: list[str]) -> None:
        """PUT the whole list (`[]` removes every cohost)."""
        self._call("PUT", f"/conferences/{_safe(conference_id)}/cohosts", json={"cohosts": cohost_list(emails)})

    def add_cohosts(self, conference_id: str, emails: list[str]) -> None:
        """PATCH: add these, keep the others."""
        if emails:
            self._call("PATCH", f"/conferences/{_safe(conference_id)}/cohosts", json={"cohosts": cohost_list(emails)})

    def remove_cohosts(self, conference_id: str, emails: list[str]) -> None:
        """DELETE ?cohost_emails=a,b (≤ 30 a call)."""
        for start in range(0, len(emails), MAX_COHOSTS):
            chunk = emails[start : start + MAX_COHOSTS]
            self._call(
                "DELETE", f"/conferences/{_safe(conference_id)}/cohosts", params={"cohost_emails": ",".join(chunk)}
            )


def _safe(conference_id: str) -> str:
    """Ids are digits (§7a); anything else never reaches the URL path."""
    text = str(conference_id)
    if not text.isdigit() or len(text) > 32:
        raise TelemostError(NOT_FOUND, 404, upstream="bad_id")
    return text
