"""Bitrix24 REST client: call, batch, list paging, expired_token → refresh → retry, rate limits.

Calls go to the portal's stored `client_endpoint` with the token in `auth` (spec §3.1). When the
token is a vault credential, an `expired_token` answer triggers the refresh engine once (request-time
refresh shares the cron path) and the call is retried with the new token.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import requests

from models.hosts import InvalidHost
from models.refresh import RefreshEngine
from models.vault import Credential, Vault

log = logging.getLogger(__name__)

RATE_LIMIT_ERRORS = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"}
# Answers after which one refresh may help: the token expired, or a peer rotated it away.
TOKEN_ERRORS = {"expired_token", "invalid_token"}
MAX_BATCH = 50


class Bitrix24Error(Exception):
    """The portal answered with an error (`code` is Bitrix24's error code)."""

    def __init__(self, code: str, description: str = "", status: int | None = None):
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.status = status


class Bitrix24Unavailable(Bitrix24Error):
    """Network failure, timeout or a non-JSON answer."""


@dataclass
class RestResult:
    """A successful answer: `result` plus paging fields."""

    result: object
    total: int | None = None
    next: int | None = None


class Bitrix24Rest:
    """Low-level calls with an explicit token (install and iframe verification use this)."""

    def __init__(self, session: requests.Session, timeout: float, rate_limit_retries: int = 3,
                 sleep=time.sleep, allow_loopback: bool = False):
        self.session = session
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self._sleep = sleep
        self.allow_loopback = allow_loopback

    def call(self, endpoint: str, access_token: str, method: str, params: dict | None = None) -> RestResult:
        """POST JSON to `{endpoint}{method}`; raises Bitrix24Error on an error answer."""
        url = f"{endpoint}{method}"
        body = dict(params or {}, auth=access_token)
        for attempt in range(self.rate_limit_retries + 1):
            try:
                response = self.session.post(url, json=body, timeout=self.timeout, allow_redirects=False,
                                             headers={"Accept": "application/json"})
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
            if error is not None and (error != "" or "error_description" in data or response.status_code >= 400):
                code = error or "ERROR"
                if code in RATE_LIMIT_ERRORS and attempt < self.rate_limit_retries:
                    # Leaky bucket: wait for it to drain a little (2 req/s on most plans).
                    self._sleep(0.5 * (2**attempt) * random.uniform(0.8, 1.2))  # noqa: S311
                    continue
                raise Bitrix24Error(code, str(data.get("error_description", ""))[:300], response.status_code)
            if response.status_code >= 500:
                raise Bitrix24Unavailable(f"http_{response.status_code}")
            if "result" not in data:
                raise Bitrix24Unavailable("bad_response", "no result")
            return RestResult(data["result"], data.get("total"), data.get("next"))
        raise Bitrix24Error("QUERY_LIMIT_EXCEEDED", "rate limit", 503)  # pragma: no cover - loop returns


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
            raise Bitrix24Error("NO_CREDENTIAL", "the portal's credential needs re-authorisation", 401)
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
            raise Bitrix24Error("expired_token", "the token could not be refreshed", 401)
        return self.rest.call(self.endpoint, renewed.access_token, method, params)

    def batch(self, commands: dict[str, tuple[str, dict]], halt: bool = False) -> dict:
        """Run up to 50 calls in one request; returns {"result", "result_error", ...} (empty parts as {})."""
        if len(commands) > MAX_BATCH:
            raise ValueError("a batch holds at most 50 calls")
        from urllib.parse import urlencode

        cmd = {key: f"{method}?{urlencode(_flatten(params))}" if params else method
               for key, (method, params) in commands.items()}
        result = self.call("batch", {"halt": 1 if halt else 0, "cmd": cmd}).result or {}
        # Bitrix24 sends empty parts as [] (PHP arrays): normalise to {}.
        return {key: (value if isinstance(value, dict) else {}) for key, value in result.items()}

    def list_all(self, method: str, params: dict | None = None, max_items: int = 5000) -> list:
        """Follow `next` through a list method's pages (50 a page)."""
        items: list = []
        start = 0
        while True:
            page = self.call(method, dict(params or {}, start=start))
            rows = page.result if isinstance(page.result, list) else []
            items.extend(rows)
            if page.next is None or len(items) >= max_items or not rows:
                return items[:max_items]
            start = int(page.next)


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
