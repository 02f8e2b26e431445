"""OAuth provider adapters: Bitrix24, Yandex and amoCRM (code exchange, refresh, error classes).

Every failure becomes an OAuthError with a `kind`:
- "transient": try again later with the same pair (timeouts, resets, 5xx, 429/503);
- "permanent": the pair will not work again (invalid_grant, invalid_client, revoked, not installed,
  PAYMENT_REQUIRED) — counts towards needs_reauth.
`unconfirmed` is set when the request may have reached the provider but its answer was lost: the
provider may have rotated the pair already, which the refresh engine must remember.
"""

from __future__ import annotations

import http.cookiejar
import time
import urllib.request
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from models.vault import Credential, TokenSet

TRANSIENT = "transient"
PERMANENT = "permanent"

PROVIDERS = ("bitrix24", "yandex", "amocrm")

BITRIX_REFRESH_LIFETIME = 180 * 24 * 3600
AMOCRM_REFRESH_LIFETIME = 90 * 24 * 3600
YANDEX_RENEW_PERIOD = 90 * 24 * 3600  # Yandex recommends refreshing long-lived tokens every three months
KNOWN_BITRIX_OAUTH_HOSTS = {"oauth.bitrix.info", "oauth.bitrix24.tech"}

BITRIX_PERMANENT = {
    "invalid_grant",
    "invalid_client",
    "invalid_request",
    "wrong_client",
    "NOT_INSTALLED",
    "NO_AUTH_FOUND",
    "PAYMENT_REQUIRED",
    "APPLICATION_NOT_FOUND",
    "ERROR_OAUTH",
    "authorization_error",
    "invalid_scope",
    "insufficient_scope",
    "bad_verification_code",
    "unsupported_grant_type",
    "unauthorized_client",
    "expired_token",
    "invalid_token",
}


class OAuthError(Exception):
    """A provider answered with an error or did not answer usefully."""

    def __init__(
        self, code: str, kind: str, *, status: int | None = None, description: str = "", unconfirmed: bool = False
    ):
        super().__init__(f"{code} ({kind}, HTTP {status}): {description}".strip())
        self.code = code
        self.kind = kind
        self.status = status
        self.description = description
        self.unconfirmed = unconfirmed

    @property
    def permanent(self) -> bool:
        """True when retrying with the same pair cannot help."""
        return self.kind == PERMANENT


def _network_error(exc: requests.RequestException) -> OAuthError:
    """Map a requests exception, telling whether the request may have been processed."""
    not_sent = isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and _caused_by(exc, NewConnectionError)
    )
    code = "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
    return OAuthError(code, TRANSIENT, description=type(exc).__name__, unconfirmed=not not_sent)


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException) and _caused_by(arg, kind):
                return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and _caused_by(reason, kind):
            return True
        current = current.__cause__ or current.__context__
    return False


def _json(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _status_kind(status: int) -> str | None:
    if status >= 500 or status in (408, 425, 429):
        return TRANSIENT
    return None


# Answers that may come after the provider already processed the request (its own crash, or a
# gateway giving up on it): the pair may have been rotated. 503/429 are refusals before any work.
_MAYBE_PROCESSED = {500, 502, 504}


def _maybe_processed(status: int) -> bool:
    return status in _MAYBE_PROCESSED


def _seconds(value, default: int) -> int:
    """A lifetime from a token answer; garbage raises a transient, unconfirmed error (the pair was issued)."""
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OAuthError(
            "bad_response", TRANSIENT, status=200, description="lifetime is not a number", unconfirmed=True
        ) from None


def make_session(pool_size: int) -> requests.Session:
    """A requests session with a connection pool sized for the refresh concurrency."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "b24-telemost/1.0"
    # One session serves every provider and portal: never carry cookies from one answer to the next.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # requests re-reads proxy variables from the environment on every request (measurable in the
    # refresh benchmark); skip that when no proxy is configured at all.
    if not urllib.request.getproxies():
        session.trust_env = False
    return session


class Provider:
    """Common parts of the adapters."""

    name = ""

    def __init__(self, session: requests.Session, timeout: float):
        self.session = session
        self.timeout = timeout

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise _network_error(exc) from None

    def refresh(self, credential: Credential) -> TokenSet:
        """Spend the credential's refresh token for a new pair."""
        raise NotImplementedError


class Bitrix24OAuth(Provider):
    """Bitrix24's OAuth server: code exchange, refresh, app.info."""

    name = "bitrix24"

    def __init__(
        self, session, timeout, *, client_id: str, client_secret: str, oauth_url: str, http_method: str = "GET"
    ):
        super().__init__(session, timeout)
        self.client_id = client_id
        self.client_secret = client_secret
        self.oauth_url = oauth_url.rstrip("/")
        # The docs show GET with a query string; b24jssdk POSTs a form and says it was verified
        # empirically (spec §2.2, unconfirmed either way): configurable, tested both ways.
        self.http_method = http_method.upper()

    def token_url(self, server_endpoint: str | None) -> str:
        """Where to refresh: the stored server_endpoint's host when it is a known Bitrix24 OAuth
        server (never an arbitrary host: the request carries our client_secret), else BITRIX24_OAUTH_URL."""
        if server_endpoint:
            parts = urlsplit(server_endpoint)
            configured = urlsplit(self.oauth_url)
            if parts.netloc in KNOWN_BITRIX_OAUTH_HOSTS and parts.scheme == "https":
                return f"https://{parts.netloc}/oauth/token/"
            if parts.netloc == configured.netloc and parts.scheme == configured.scheme:
                return f"{self.oauth_url}/oauth/token/"
        return f"{self.oauth_url}/oauth/token/"

    def _token_request(self, params: dict, server_endpoint: str | None) -> TokenSet:
        params = dict(params, client_id=self.client_id, client_secret=self.client_secret)
        if self.http_method == "POST":
            response = self._send("POST", self.token_url(server_endpoint), data=params)
        else:
            response = self._send("GET", self.token_url(server_endpoint), params=params)
        body = _json(response)
        error = (body or {}).get("error")
        if response.status_code == 200 and body and not error and body.get("access_token"):
            now = int(time.time())
            expires = _seconds(body.get("expires"), 0)
            expires_at = expires if expires else now + _seconds(body.get("expires_in"), 3600)
            return TokenSet(
                access_token=body["access_token"],
                refresh_token=body.get("refresh_token"),
                expires_at=expires_at,
                refresh_expires_at=now + BITRIX_REFRESH_LIFETIME,
            )
        kind = _status_kind(response.status_code)
        if error == "QUERY_LIMIT_EXCEEDED" or error == "OVERLOAD_LIMIT":
            kind = TRANSIENT
        if kind is None:
            kind = PERMANENT if error in BITRIX_PERMANENT else (TRANSIENT if not error else PERMANENT)
        # A 200 without a usable pair, or a server/gateway error, may have rotated the token already.
        unconfirmed = (response.status_code == 200 and not error) or _maybe_processed(response.status_code)
        return self._raise(error or f"http_{response.status_code}", kind, response, body, unconfirmed)

    @staticmethod
    def _raise(code, kind, response, body, unconfirmed=False):
        raise OAuthError(
            code,
            kind,
            status=response.status_code,
            description=str((body or {}).get("error_description", ""))[:200],
            unconfirmed=unconfirmed,
        )

    def refresh(self, credential: Credential) -> TokenSet:
        """Refresh a portal or user credential."""
        if not credential.refresh_token:
            raise OAuthError("no_refresh_token", PERMANENT)
        return self._token_request(
            {"grant_type": "refresh_token", "refresh_token": credential.refresh_token}, credential.endpoint
        )

    def exchange_code(self, code: str) -> TokenSet:
        """Exchange an authorization code (lives 30 s)."""
        return self._token_request({"grant_type": "authorization_code", "code": code}, None)

    def app_info(self, access_token: str) -> dict:
        """Ask the OAuth server whose token this is: client_id, user_id and the install (member_id…)."""
        response = self._send("GET", f"{self.oauth_url}/rest/app.info", params={"auth": access_token})
        body = _json(response)
        if response.status_code == 200 and body and isinstance(body.get("result"), dict):
            return body["result"]
        error = (body or {}).get("error") or f"http_{response.status_code}"
        kind = _status_kind(response.status_code) or PERMANENT
        raise OAuthError(
            error, kind, status=response.status_code, description=str((body or {}).get("error_description", ""))[:200]
        )


class YandexOAuth(Provider):
    """Yandex OAuth (oauth.yandex.ru): code exchange, refresh, login info."""

    name = "yandex"

    def __init__(self, session, timeout, *, client_id: str, client_secret: str, oauth_url: str, login_url: str):
        super().__init__(session, timeout)
        self.client_id = client_id
        self.client_secret = client_secret
        self.oauth_url = oauth_url.rstrip("/")
        self.login_url = login_url.rstrip("/")

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """The page the user is sent to for consent."""
        from urllib.parse import urlencode

        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "force_confirm": "yes",
            }
        )
        return f"{self.oauth_url}/authorize?{query}"

    def _token_request(self, data: dict) -> TokenSet:
        if not self.client_id or not self.client_secret:
            raise OAuthError("invalid_client", PERMANENT, description="YANDEX_CLIENT_ID/SECRET are not set")
        response = self._send("POST", f"{self.oauth_url}/token", data=data, auth=(self.client_id, self.client_secret))
        body = _json(response)
        if response.status_code == 200 and body and body.get("access_token"):
            now = int(time.time())
            expires_at = now + _seconds(body.get("expires_in"), 31536000)
            return TokenSet(
                access_token=body["access_token"],
                refresh_token=body.get("refresh_token"),
                expires_at=expires_at,
                refresh_expires_at=min(expires_at, now + YANDEX_RENEW_PERIOD),
            )
        error = (body or {}).get("error")
        # A 200 without a usable pair may have rotated the token server-side: retry, remembering that.
        unconfirmed = (response.status_code == 200 and not error) or _maybe_processed(response.status_code)
        kind = _status_kind(response.status_code) or (TRANSIENT if unconfirmed else PERMANENT)
        raise OAuthError(
            error or f"http_{response.status_code}",
            kind,
            status=response.status_code,
            description=str((body or {}).get("error_description", ""))[:200],
            unconfirmed=unconfirmed,
        )

    def refresh(self, credential: Credential) -> TokenSet:
        """Refresh a Yandex credential (the access token may come back unchanged)."""
        if not credential.refresh_token:
            raise OAuthError("no_refresh_token", PERMANENT)
        return self._token_request({"grant_type": "refresh_token", "refresh_token": credential.refresh_token})

    def exchange_code(self, code: str) -> TokenSet:
        """Exchange an authorization code (lives 10 min)."""
        return self._token_request({"grant_type": "authorization_code", "code": code})

    def user_info(self, access_token: str) -> dict:
        """The Yandex account behind a token (id, login, default_email)."""
        response = self._send(
            "GET",
            f"{self.login_url}/info",
            params={"format": "json"},
            headers={"Authorization": f"OAuth {access_token}"},
        )
        body = _json(response)
        if response.status_code == 200 and body and body.get("id"):
            return body
        raise OAuthError(
            "userinfo_failed", _status_kind(response.status_code) or PERMANENT, status=response.status_code
        )


AMO_PERMANENT_HINTS = {
    "Token has been revoked": "invalid_grant",
    "Invalid refresh token": "invalid_grant",
    "Authorization code has expired": "invalid_grant",
    "Authorization code has been revoked": "invalid_grant",
    "Cannot decrypt the authorization code": "invalid_grant",
    "Check the `client_id` parameter": "invalid_client",
    "Check the `client_secret` parameter": "invalid_client",
    "Redirect URI is not associated with client": "invalid_client",
    "Invalid account": "invalid_account",
}


class AmoCRMOAuth(Provider):
    """amoCRM / Kommo OAuth per account subdomain."""

    name = "amocrm"

    def __init__(
        self,
        session,
        timeout,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        base_url: str,
        authorize_url: str,
    ):
        super().__init__(session, timeout)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.base_url = base_url
        self.authorize_base = authorize_url

    def account_url(self, subdomain: str) -> str:
        """The account's base URL from the AMOCRM_BASE_URL template."""
        return self.base_url.format(subdomain=subdomain).rstrip("/")

    def authorize_url(self, state: str) -> str:
        """amoCRM's consent page."""
        from urllib.parse import urlencode

        return f"{self.authorize_base}?" + urlencode(
            {"client_id": self.client_id, "state": state, "mode": "post_message"}
        )

    def _token_request(self, subdomain: str, payload: dict) -> TokenSet:
        if not self.client_id or not self.client_secret:
            raise OAuthError("invalid_client", PERMANENT, description="AMOCRM_CLIENT_ID/SECRET are not set")
        body = dict(payload, client_id=self.client_id, client_secret=self.client_secret, redirect_uri=self.redirect_uri)
        response = self._send("POST", f"{self.account_url(subdomain)}/oauth2/access_token", json=body)
        data = _json(response)
        if response.status_code == 200 and data and data.get("access_token"):
            now = int(time.time())
            return TokenSet(
                access_token=data["access_token"],
                refresh_token=data.get("refresh_token"),
                expires_at=now + _seconds(data.get("expires_in"), 86400),
                refresh_expires_at=now + AMOCRM_REFRESH_LIFETIME,
            )
        hint = str((data or {}).get("hint") or "")
        kind = _status_kind(response.status_code)
        code = AMO_PERMANENT_HINTS.get(hint)
        # A 200 without a usable pair may have rotated the token server-side: retry, remembering that.
        unconfirmed = (response.status_code == 200 and code is None) or _maybe_processed(response.status_code)
        if kind is None and unconfirmed:
            kind = TRANSIENT
        elif kind is None:
            kind = PERMANENT
            code = code or ("invalid_grant" if response.status_code == 401 else f"http_{response.status_code}")
        raise OAuthError(
            code or f"http_{response.status_code}",
            kind,
            status=response.status_code,
            description=hint[:200],
            unconfirmed=unconfirmed,
        )

    def refresh(self, credential: Credential) -> TokenSet:
        """Refresh an account's pair (single-use refresh token)."""
        if not credential.refresh_token:
            raise OAuthError("no_refresh_token", PERMANENT)
        return self._token_request(
            credential.account, {"grant_type": "refresh_token", "refresh_token": credential.refresh_token}
        )

    def exchange_code(self, subdomain: str, code: str) -> TokenSet:
        """Exchange an authorization code for the account's first pair."""
        return self._token_request(subdomain, {"grant_type": "authorization_code", "code": code})

    def account_info(self, subdomain: str, access_token: str) -> dict:
        """GET /api/v4/account: proves the token works and names the account."""
        response = self._send(
            "GET", f"{self.account_url(subdomain)}/api/v4/account", headers={"Authorization": f"Bearer {access_token}"}
        )
        data = _json(response)
        if response.status_code == 200 and data:
            return data
        raise OAuthError("account_failed", _status_kind(response.status_code) or PERMANENT, status=response.status_code)
