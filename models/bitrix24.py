"""Bitrix24 REST client: call, batch, list paging, expired_token → refresh → retry, rate limits, pacing.

Calls go to the portal's stored `client_endpoint` with the token in `auth` (spec §3.1), or, in
single-portal webhook mode, to the incoming webhook's URL with no token (`WebhookClient`). When the
token is a vault credential, an `expired_token` answer triggers the refresh engine once (request-time
refresh shares the cron path) and the call is retried with the new token. The system errors of spec
§3.3 arrive as typed subclasses of `Bitrix24Error` (callers that catch the base class keep working).

Each portal allows a leaky bucket of requests (§3.4: +1 a request, drains 2/s, refuses above 50 with
503 QUERY_LIMIT_EXCEEDED). A `Pacer` keeps this process's calls to one portal under that bucket, so a
burst waits a little on our side instead of being refused; a refusal that still happens (other
processes and hosts share the bucket) is retried with bounded backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests

from models.hosts import InvalidHost
from models.refresh import RefreshEngine
from models.vault import Credential, Vault
from models.webhook import needs_app_context

log = logging.getLogger(__name__)

RATE_LIMIT_ERRORS = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"}
# Answers after which one refresh may help: the token expired, or a peer rotated it away.
TOKEN_ERRORS = {"expired_token", "invalid_token"}
MAX_BATCH = 50
PAGE_SIZE = 50
PACE_DRAIN_PER_SECOND = 2.0
PACE_BURST = 50
MAX_PACE_WAIT = 30.0


class Bitrix24Error(Exception):
    """The portal answered with an error (`code` is Bitrix24's error code)."""

    def __init__(self, code: str, description: str = "", status: int | None = None):
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.status = status


class Bitrix24Unavailable(Bitrix24Error):
    """Network failure, timeout or a non-JSON answer."""


class Bitrix24AuthError(Bitrix24Error):
    """The token is not accepted (expired_token, invalid_token, NO_AUTH_FOUND, app not installed…)."""


class Bitrix24AccessDenied(Bitrix24Error):
    """The token's user or the app lacks a right or scope (ACCESS_DENIED, insufficient_scope…)."""


class Bitrix24RateLimited(Bitrix24Error):
    """QUERY_LIMIT_EXCEEDED, OPERATION_TIME_LIMIT or OVERLOAD_LIMIT after our retries."""


class Bitrix24PaymentRequired(Bitrix24Error):
    """The portal's plan does not allow REST (PAYMENT_REQUIRED)."""


class Bitrix24BadRequest(Bitrix24Error):
    """The request itself was refused (INVALID_REQUEST, batch too long, method not allowed in batch)."""


class Bitrix24MethodNotFound(Bitrix24Error):
    """ERROR_METHOD_NOT_FOUND."""


class Bitrix24ServerError(Bitrix24Unavailable):
    """INTERNAL_SERVER_ERROR, ERROR_UNEXPECTED_ANSWER: the portal failed; a later try may work."""


class Bitrix24PortalDeleted(Bitrix24Error):
    """PORTAL_DELETED: the portal is gone for good."""


_SYSTEM_ERRORS: dict[str, type[Bitrix24Error]] = {
    **dict.fromkeys(
        (
            "expired_token",
            "invalid_token",
            "NO_AUTH_FOUND",
            "authorization_error",
            "APPLICATION_NOT_FOUND",
            "ERROR_OAUTH",
            "METHOD_CONFIRM_WAITING",
        ),
        Bitrix24AuthError,
    ),
    **dict.fromkeys(
        ("insufficient_scope", "ACCESS_DENIED", "INVALID_CREDENTIALS", "user_access_error", "WRONG_AUTH_TYPE"),
        Bitrix24AccessDenied,
    ),
    **dict.fromkeys(("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "OVERLOAD_LIMIT"), Bitrix24RateLimited),
    "PAYMENT_REQUIRED": Bitrix24PaymentRequired,
    **dict.fromkeys(
        ("INVALID_REQUEST", "ERROR_BATCH_LENGTH_EXCEEDED", "ERROR_BATCH_METHOD_NOT_ALLOWED"), Bitrix24BadRequest
    ),
    "ERROR_METHOD_NOT_FOUND": Bitrix24MethodNotFound,
    **dict.fromkeys(("INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"), Bitrix24ServerError),
    "PORTAL_DELETED": Bitrix24PortalDeleted,
}


def error_for(code: str, description: str = "", status: int | None = None) -> Bitrix24Error:
    """The typed exception for an error answer (§3.3); method errors stay plain Bitrix24Error."""
    return _SYSTEM_ERRORS.get(code, Bitrix24Error)(code, description, status)


@dataclass
class RestResult:
    """A successful answer: `result` plus paging fields."""

    result: object
    total: int | None = None
    next: int | None = None


class Pacer:
    """Process-local leaky bucket per portal: +1 a call, drains `drain`/s, waits instead of exceeding `burst`."""

    def __init__(
        self,
        drain: float = PACE_DRAIN_PER_SECOND,
        burst: int = PACE_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.drain = drain
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}

    def reserve(self, key: str) -> float:
        """Take a slot for `key`; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            level, stamp = self._levels.get(key, (0.0, now))
            level = max(0.0, level - (now - stamp) * self.drain) + 1
            self._levels[key] = (level, now)
            if len(self._levels) > 10000:  # forget idle portals now and then
                self._levels = {k: v for k, v in self._levels.items() if v[0] - (now - v[1]) * self.drain > 0}
        return max(0.0, (level - self.burst) / self.drain)

    def wait(self, key: str) -> float:
        """Reserve and sleep as long as needed (bounded); returns the time slept."""
        delay = min(self.reserve(key), MAX_PACE_WAIT)
        if delay > 0:
            self._sleep(delay)
        return delay


class Bitrix24Rest:
    """Low-level calls with an explicit token (install and iframe verification use this)."""

    def __init__(
        self,
        session: requests.Session,
        timeout: float,
        rate_limit_retries: int = 3,
        sleep=time.sleep,
        allow_loopback: bool = False,
        pacer: Pacer | None = None,
    ):
        self.session = session
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self._sleep = sleep
        self.allow_loopback = allow_loopback
        self.pacer = pacer if pacer is not None else Pacer(sleep=sleep)

    def call(self, endpoint: str, access_token: str, method: str, params: dict | None = None) -> RestResult:
        """POST JSON to `{endpoint}{method}`; raises a Bitrix24Error (typed per §3.3) on an error answer."""
        return self._post(f"{endpoint}{method}", dict(params or {}, auth=access_token), urlsplit(endpoint).netloc)

    def call_webhook(self, webhook_url: str, method: str, params: dict | None = None) -> RestResult:
        """POST JSON to `{webhook_url}{method}` (an incoming webhook, §3.1): no `auth`, nothing to refresh."""
        return self._post(f"{webhook_url}{method}", dict(params or {}), urlsplit(webhook_url).netloc)

    def _post(self, url: str, body: dict, pace_key: str) -> RestResult:
        for attempt in range(self.rate_limit_retries + 1):
            self.pacer.wait(pace_key)
            try:
                response = self.session.post(
                    url, json=body, timeout=self.timeout, allow_redirects=False, headers={"Accept": "application/json"}
                )
            except InvalidHost as exc:  # the pinned transport (models/http.py) refused the portal's address
                raise Bitrix24Error("PORTAL_ADDRESS_REFUSED", str(exc), 400) from None
            except requests.RequestException as exc:
                raise Bitrix24Unavailable("network_error", type(exc).__name__) from None
            try:
                data = response.json()
            except ValueError:
                raise Bitrix24Unavailable("bad_response", f"HTTP {response.status_code}, not JSON") from None
            if not isinstance(data, dict):
                raise Bitrix24Unavailable("bad_response", "JSON is not an object")
            error = data.get("error")
            limited = response.status_code == 429 or error in RATE_LIMIT_ERRORS
            if limited and attempt < self.rate_limit_retries:
                # Leaky bucket: wait for it to drain a little (2 req/s on most plans).
                self._sleep(0.5 * (2**attempt) * random.uniform(0.8, 1.2))  # noqa: S311
                continue
            if error is not None and (error != "" or "error_description" in data or response.status_code >= 400):
                code = error or ("QUERY_LIMIT_EXCEEDED" if response.status_code == 429 else "ERROR")
                raise error_for(code, str(data.get("error_description", ""))[:300], response.status_code)
            if response.status_code >= 500:
                raise Bitrix24ServerError(f"http_{response.status_code}")
            if "result" not in data:
                raise Bitrix24Unavailable("bad_response", "no result")
            return RestResult(data["result"], data.get("total"), data.get("next"))
        raise Bitrix24RateLimited("QUERY_LIMIT_EXCEEDED", "rate limit", 503)  # pragma: no cover - loop returns


class PortalClient:
    """REST calls on behalf of a stored credential, with request-time refresh."""

    def __init__(self, rest: Bitrix24Rest, vault: Vault, engine: RefreshEngine, endpoint: str, credential_id: int):
        self.rest = rest
        self.vault = vault
        self.engine = engine
        self.endpoint = endpoint
        self.credential_id = credential_id

    def _credential(self) -> Credential:
        cred = self.engine.ensure_fresh(self.credential_id)
        if cred is None or cred.status != "active":
            raise Bitrix24AuthError("NO_CREDENTIAL", "the portal's credential needs re-authorisation", 401)
        return cred

    def call(self, method: str, params: dict | None = None) -> RestResult:
        """Call a method; on expired_token (or invalid_token) refresh once and retry."""
        cred = self._credential()
        self.vault.mark_used(cred.id, cred.last_used_at)
        try:
            return self.rest.call(self.endpoint, cred.access_token, method, params)
        except Bitrix24Error as exc:
            if exc.code not in TOKEN_ERRORS:
                raise
        renewed = self.engine.after_expired_token(cred)
        if renewed is None:
            raise Bitrix24AuthError("expired_token", "the token could not be refreshed", 401)
        return self.rest.call(self.endpoint, renewed.access_token, method, params)

    def batch(self, commands: dict[str, tuple[str, dict]], halt: bool = False) -> dict:
        """Run up to 50 calls in one request; returns {"result", "result_error", ...} (empty parts as {}).

        A parameter value may reference an earlier command's answer: `"$result[key][FIELD]"` (§3.5).
        Per-command failures are in `result_error`; `command_errors()` turns them into exceptions.
        """
        if len(commands) > MAX_BATCH:
            raise ValueError("a batch holds at most 50 calls")
        cmd = {
            key: f"{method}?{urlencode(_flatten(params))}" if params else method
            for key, (method, params) in commands.items()
        }
        result = self.call("batch", {"halt": 1 if halt else 0, "cmd": cmd}).result or {}
        if not isinstance(result, dict):
            raise Bitrix24Unavailable("bad_response", "batch result is not an object")
        # Bitrix24 sends empty parts as [] (PHP arrays): normalise to {}.
        return {key: (value if isinstance(value, dict) else {}) for key, value in result.items()}

    def list_page(self, method: str, params: dict | None = None, start: int = 0) -> RestResult:
        """One page (≤ 50 rows) of a list method from `start`; `.next` is the following page's start."""
        return self.call(method, dict(params or {}, start=start))

    def list_all(self, method: str, params: dict | None = None, max_items: int = 5000) -> list:
        """Follow `next` through a list method's pages (50 a page)."""
        items: list = []
        start = 0
        while True:
            page = self.list_page(method, params, start)
            rows = page.result if isinstance(page.result, list) else []
            items.extend(rows)
            if page.next is None or len(items) >= max_items or not rows:
                return items[:max_items]
            start = int(page.next)


class WebhookClient(PortalClient):
    """REST calls through the portal's incoming webhook (single-portal webhook mode, models/webhook.py).

    Acts as the webhook's user with no token to refresh. Methods that need the app's own context
    (events, placements, the app's bot) go through `app_client`, the app's OAuth credential, when there
    is one: Bitrix24 refuses them through a webhook.
    """

    def __init__(self, rest: Bitrix24Rest, webhook_url: str, app_client: PortalClient | None = None):
        self.rest = rest
        self.webhook_url = webhook_url
        self.app_client = app_client
        self.endpoint = app_client.endpoint if app_client else ""
        self.credential_id = app_client.credential_id if app_client else None

    def __repr__(self) -> str:
        # The URL holds the webhook's code: never in a repr (tracebacks, debug logs).
        return f"WebhookClient(host={urlsplit(self.webhook_url).netloc!r})"

    def call(self, method: str, params: dict | None = None) -> RestResult:
        """Call a method through the webhook (app-context methods through the app's credential)."""
        if self.app_client is not None and needs_app_context(method):
            return self.app_client.call(method, params)
        return self.rest.call_webhook(self.webhook_url, method, params)

    def batch(self, commands: dict[str, tuple[str, dict]], halt: bool = False) -> dict:
        """A batch through the webhook, or through the app's credential when a command needs the app."""
        if self.app_client is not None and any(needs_app_context(method) for method, _ in commands.values()):
            return self.app_client.batch(commands, halt)
        return super().batch(commands, halt)


def command_errors(batch_result: dict) -> dict[str, Bitrix24Error]:
    """The failed commands of a batch answer as typed errors, by command key."""
    out: dict[str, Bitrix24Error] = {}
    for key, error in (batch_result.get("result_error") or {}).items():
        if isinstance(error, dict):
            out[key] = error_for(str(error.get("error") or "ERROR"), str(error.get("error_description") or "")[:300])
        else:
            out[key] = Bitrix24Error("ERROR", str(error)[:300])
    return out


def _flatten(params: dict, prefix: str = "") -> list[tuple[str, str]]:
    """PHP bracket keys for a batch sub-query: {"FILTER": {"ID": 1}} → FILTER[ID]=1."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            out.extend(_flatten(value, name))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(_flatten(item, f"{name}[{i}]"))
                else:
                    out.append((f"{name}[{i}]", str(item)))
        elif isinstance(value, bool):
            out.append((name, "Y" if value else "N"))
        else:
            out.append((name, "" if value is None else str(value)))
    return out
