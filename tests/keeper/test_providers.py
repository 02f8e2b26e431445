"""Provider adapters (models/oauth.py) against documented bodies served over real local HTTP.

The bodies come from ../shared/fixtures/examples at run time; a tiny werkzeug server on 127.0.0.1 answers
with them, so parsing and error classification go through requests exactly as in production.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from models.oauth import PERMANENT, TRANSIENT, AmoCRMOAuth, Bitrix24OAuth, OAuthError, YandexOAuth, make_session
from models.vault import ACCOUNT_SUBJECT, ACTIVE, PORTAL_SUBJECT, Credential
from scripts.stack import free_port
from tests.conftest import load_fixture

CLIENT_ID = "local.provider.test"
CLIENT_SECRET = "s" * 40
AMO_REDIRECT = "https://app.example.com/auth/amocrm/callback"
TIMEOUT = 2.0


@dataclass
class Answer:
    """What the fake provider sends back for the next request."""

    status: int = 200
    body: object = None  # dict → JSON, str → sent as is
    content_type: str = "application/json"
    delay: float = 0.0


@dataclass
class Seen:
    """One request as the fake provider received it."""

    method: str
    path: str
    query: dict
    headers: dict
    content_type: str
    raw: bytes


class _Quiet(WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        """No access log in test output."""


@dataclass
class FakeProvider:
    """A loopback HTTP server answering every request with `answer` and recording what it got."""

    answer: Answer = field(default_factory=Answer)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self):
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _app(self, environ, start_response):
        request = Request(environ)
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.args),
                dict(request.headers),
                request.mimetype,
                request.get_data(),
            )
        )
        answer = self.answer
        if answer.delay:
            time.sleep(answer.delay)
        payload = answer.body if isinstance(answer.body, str) else json.dumps(answer.body, ensure_ascii=False)
        return Response(payload, status=answer.status, content_type=answer.content_type)(environ, start_response)

    def reply(self, status=200, body=None, content_type="application/json", delay=0.0) -> None:
        """Set the answer for the next requests and forget earlier ones."""
        self.answer = Answer(status, body, content_type, delay)
        self.seen.clear()

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def fake():
    server = FakeProvider()
    yield server
    server.stop()


@pytest.fixture
def session():
    s = make_session(4)
    yield s
    s.close()


@pytest.fixture
def bitrix(fake, session):
    return Bitrix24OAuth(session, TIMEOUT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, oauth_url=fake.url)


@pytest.fixture
def yandex(fake, session):
    return YandexOAuth(
        session,
        TIMEOUT,
        client_id="ya-client",
        client_secret="ya-secret",
        oauth_url=f"{fake.url}/yandex",
        login_url=f"{fake.url}/login",
    )


@pytest.fixture
def amocrm(fake, session):
    return AmoCRMOAuth(
        session,
        TIMEOUT,
        client_id="amo-client",
        client_secret="amo-secret" * 6,
        redirect_uri=AMO_REDIRECT,
        base_url=f"{fake.url}/amo/{{subdomain}}",
        authorize_url=f"{fake.url}/amo/oauth",
    )


def make_credential(provider: str, account: str = "acme", refresh_token: str = "old-refresh", **overrides):
    """A decrypted vault row as the engine hands it to an adapter."""
    now = int(time.time())
    values = dict(
        id=1,
        provider=provider,
        account=account,
        subject=PORTAL_SUBJECT if provider == "bitrix24" else ACCOUNT_SUBJECT,
        portal_id=None,
        user_id=None,
        label=None,
        endpoint=None,
        access_token="old-access",
        refresh_token=refresh_token,
        expires_at=now + 30,
        refresh_expires_at=None,
        version=1,
        status=ACTIVE,
        failure_count=0,
        last_error=None,
        last_error_at=None,
        unconfirmed_attempt=False,
        lease_owner=None,
        lease_until=None,
        refreshed_at=now,
        last_used_at=now,
    )
    values.update(overrides)
    return Credential(**values)


def payload(name: str) -> dict:
    return load_fixture(name)["payload"]


def refresh_error(adapter, provider: str) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        adapter.refresh(make_credential(provider))
    return caught.value


# ---- Bitrix24 -----------------------------------------------------------------------------------------


def test_bitrix_refresh_uses_expires_from_the_documented_response(fake, bitrix):
    body = payload("oauth-refresh-response.json")
    fake.reply(200, body)
    tokens = bitrix.refresh(make_credential("bitrix24"))
    assert (tokens.access_token, tokens.refresh_token) == (body["access_token"], body["refresh_token"])
    assert tokens.expires_at == body["expires"], "the absolute `expires` wins over expires_in"
    # The request is the documented GET with the four query parameters.
    [seen] = fake.seen
    assert (seen.method, seen.path) == ("GET", "/oauth/token/")
    assert set(seen.query) == set(payload("oauth-refresh-request.json"))
    assert seen.query["grant_type"] == "refresh_token"
    assert (seen.query["refresh_token"], seen.query["client_id"], seen.query["client_secret"]) == (
        "old-refresh",
        CLIENT_ID,
        CLIENT_SECRET,
    )


def test_bitrix_code_exchange_without_expires_falls_back_to_expires_in(fake, bitrix):
    body = payload("oauth-authorization-code-response.json")
    assert "expires" not in body
    fake.reply(200, body)
    before = int(time.time())
    tokens = bitrix.exchange_code("the-code")
    assert before + body["expires_in"] <= tokens.expires_at <= int(time.time()) + body["expires_in"]
    assert tokens.refresh_token == body["refresh_token"]
    [seen] = fake.seen
    assert seen.query["grant_type"] == "authorization_code" and seen.query["code"] == "the-code"


def test_bitrix_refresh_never_sends_the_secret_to_an_unknown_server_endpoint(fake, bitrix):
    fake.reply(200, payload("oauth-refresh-response.json"))
    bitrix.refresh(make_credential("bitrix24", endpoint="https://evil.example.com/rest/"))
    [seen] = fake.seen
    assert seen.path == "/oauth/token/", "an arbitrary stored endpoint falls back to BITRIX24_OAUTH_URL"
    assert bitrix.token_url("https://oauth.bitrix24.tech/rest/") == "https://oauth.bitrix24.tech/oauth/token/"


@pytest.mark.parametrize(
    ("fixture", "status", "code", "kind"),
    [
        ("oauth-error-invalid_grant.json", 400, "invalid_grant", PERMANENT),
        ("oauth-error-invalid_grant-pysdk.json", 400, "invalid_grant", PERMANENT),
        ("oauth-error-PAYMENT_REQUIRED.json", 401, "PAYMENT_REQUIRED", PERMANENT),
        ("oauth-error-PAYMENT_REQUIRED.json", 200, "PAYMENT_REQUIRED", PERMANENT),
    ],
    ids=["invalid_grant-phpsdk", "invalid_grant-pysdk", "PAYMENT_REQUIRED-401", "PAYMENT_REQUIRED-200"],
)
def test_bitrix_documented_errors(fake, bitrix, fixture, status, code, kind):
    body = payload(fixture)
    fake.reply(status, body)
    error = refresh_error(bitrix, "bitrix24")
    assert (error.code, error.kind, error.status) == (code, kind, status)
    assert error.permanent
    assert not error.unconfirmed, "an error answer is a definite no: nothing was rotated"
    assert error.description == body.get("error_description", "")


def test_bitrix_wrong_client_with_http_200_is_permanent(fake, bitrix):
    # b24pysdk (oauth-error-invalid_grant-pysdk.json notes): wrong_client comes back with HTTP 200.
    assert "wrong_client" in load_fixture("oauth-error-invalid_grant-pysdk.json")["notes"]
    fake.reply(200, {"error": "wrong_client"})
    error = refresh_error(bitrix, "bitrix24")
    assert (error.code, error.kind, error.unconfirmed) == ("wrong_client", PERMANENT, False)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal Server Error"}, "application/json"),
        (502, "<html><body>Bad Gateway</body></html>", "text/html"),
        (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, "application/json"),
        (429, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, "application/json"),
        (503, "Service Unavailable", "text/plain"),
    ],
)
def test_bitrix_server_trouble_is_transient(fake, bitrix, status, body, content_type):
    fake.reply(status, body, content_type)
    error = refresh_error(bitrix, "bitrix24")
    assert error.kind == TRANSIENT and error.status == status
    # 500/502/504 may come after the server (or the request behind a gateway) rotated the pair;
    # 503/429 are refusals before any work.
    assert error.unconfirmed == (status in (500, 502, 504))


def test_bitrix_non_json_200_is_transient_and_unconfirmed(fake, bitrix):
    fake.reply(200, "<html>maintenance</html>", "text/html")
    error = refresh_error(bitrix, "bitrix24")
    assert (error.kind, error.unconfirmed) == (TRANSIENT, True), "a 200 may have rotated the pair server-side"


# ---- Yandex -------------------------------------------------------------------------------------------


def test_yandex_refresh_sends_basic_auth_and_a_form(fake, yandex):
    fake.reply(
        200, {"access_token": "y0_new", "refresh_token": "1:new", "token_type": "bearer", "expires_in": 31536000}
    )
    before = int(time.time())
    tokens = yandex.refresh(make_credential("yandex", refresh_token="1:old"))
    assert (tokens.access_token, tokens.refresh_token) == ("y0_new", "1:new")
    assert before + 31536000 <= tokens.expires_at <= int(time.time()) + 31536000
    [seen] = fake.seen
    assert (seen.method, seen.path, seen.content_type) == ("POST", "/yandex/token", "application/x-www-form-urlencoded")
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"ya-client:ya-secret").decode()
    form = dict(parse_qsl(seen.raw.decode()))
    assert form == {"grant_type": "refresh_token", "refresh_token": "1:old"}


def test_yandex_access_token_may_come_back_unchanged(fake, yandex):
    # telemost.md §9: the access token may be returned as is; the new refresh token must still be kept.
    fake.reply(
        200, {"access_token": "old-access", "refresh_token": "1:rotated", "token_type": "bearer", "expires_in": 3600}
    )
    tokens = yandex.refresh(make_credential("yandex"))
    assert (tokens.access_token, tokens.refresh_token) == ("old-access", "1:rotated")


@pytest.mark.parametrize(
    ("status", "body", "code", "kind"),
    [
        (400, {"error_description": "Invalid refresh token", "error": "invalid_grant"}, "invalid_grant", PERMANENT),
        (400, {"error": "invalid_grant"}, "invalid_grant", PERMANENT),
        (401, {"error_description": "Client not found", "error": "invalid_client"}, "invalid_client", PERMANENT),
        (400, {"error_description": "Wrong client secret", "error": "invalid_client"}, "invalid_client", PERMANENT),
        (500, {"error": "server_error", "error_description": "oops"}, "server_error", TRANSIENT),
        (503, {"error": "temporarily_unavailable"}, "temporarily_unavailable", TRANSIENT),
        (429, {"error": "too_many_requests"}, "too_many_requests", TRANSIENT),
        (502, "<html>Bad Gateway</html>", "http_502", TRANSIENT),
    ],
)
def test_yandex_error_classes(fake, yandex, status, body, code, kind):
    fake.reply(status, body, "application/json" if isinstance(body, dict) else "text/html")
    error = refresh_error(yandex, "yandex")
    assert (error.code, error.kind, error.status) == (code, kind, status)
    assert error.unconfirmed == (status in (500, 502, 504))


def test_yandex_non_json_200_is_transient_and_unconfirmed(fake, yandex):
    fake.reply(200, "<html>maintenance</html>", "text/html")
    error = refresh_error(yandex, "yandex")
    assert error.unconfirmed, "a 200 may have rotated the pair server-side"
    assert error.kind == TRANSIENT, "a garbled 200 is no proof the pair is dead (Bitrix24 treats it so too)"


# ---- amoCRM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grant_type", ["refresh_token", "authorization_code"])
def test_amocrm_request_body_matches_the_documented_shape(fake, amocrm, grant_type):
    documented = payload(f"amocrm-oauth-token-request-{grant_type}.json")
    fake.reply(
        200,
        {
            "token_type": "Bearer",
            "expires_in": 86400,
            "access_token": "eyJ.new",
            "refresh_token": "def50200new",
            "server_time": int(time.time()),
        },
    )
    before = int(time.time())
    if grant_type == "refresh_token":
        tokens = amocrm.refresh(make_credential("amocrm", account="acme", refresh_token="def50200old"))
    else:
        tokens = amocrm.exchange_code("acme", "def50200code")
    assert (tokens.access_token, tokens.refresh_token) == ("eyJ.new", "def50200new")
    assert before + 86400 <= tokens.expires_at <= int(time.time()) + 86400
    [seen] = fake.seen
    assert (seen.method, seen.path, seen.content_type) == ("POST", "/amo/acme/oauth2/access_token", "application/json")
    sent = json.loads(seen.raw)
    assert set(sent) == set(documented), "same keys as the documented body, redirect_uri included"
    secret = {"refresh_token": ("refresh_token", "def50200old"), "authorization_code": ("code", "def50200code")}
    key, value = secret[grant_type]
    assert (sent["grant_type"], sent[key], sent["redirect_uri"]) == (grant_type, value, AMO_REDIRECT)
    assert (sent["client_id"], sent["client_secret"]) == ("amo-client", "amo-secret" * 6)


def amo_problem(hint: str | None, status: int) -> dict:
    body = {
        "title": "Некорректный запрос",
        "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
        "status": status,
        "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
    }
    if hint is not None:
        body["hint"] = hint
    return body


@pytest.mark.parametrize(
    ("hint", "status", "code", "kind"),
    [
        ("Token has been revoked", 401, "invalid_grant", PERMANENT),
        ("Invalid refresh token", 400, "invalid_grant", PERMANENT),
        ("Authorization code has expired", 400, "invalid_grant", PERMANENT),
        ("Authorization code has expired", 401, "invalid_grant", PERMANENT),
        ("Authorization code has been revoked", 400, "invalid_grant", PERMANENT),
        ("Cannot decrypt the authorization code", 400, "invalid_grant", PERMANENT),
        ("Check the `client_id` parameter", 400, "invalid_client", PERMANENT),
        ("Check the `client_secret` parameter", 400, "invalid_client", PERMANENT),
        ("Redirect URI is not associated with client", 400, "invalid_client", PERMANENT),
        ("Invalid account", 400, "invalid_account", PERMANENT),
        (None, 401, "invalid_grant", PERMANENT),
        (None, 500, "http_500", TRANSIENT),
        (None, 503, "http_503", TRANSIENT),
        (None, 429, "http_429", TRANSIENT),
    ],
)
def test_amocrm_problem_json_hints(fake, amocrm, hint, status, code, kind):
    fake.reply(status, amo_problem(hint, status), "application/problem+json")
    error = refresh_error(amocrm, "amocrm")
    assert (error.code, error.kind, error.status) == (code, kind, status)
    assert error.unconfirmed == (status in (500, 502, 504))


def test_amocrm_non_json_200_is_transient_and_unconfirmed(fake, amocrm):
    fake.reply(200, "<html>maintenance</html>", "text/html")
    error = refresh_error(amocrm, "amocrm")
    assert error.unconfirmed, "a 200 may have rotated the pair server-side"
    assert error.kind == TRANSIENT, "a garbled 200 is no proof the pair is dead (Bitrix24 treats it so too)"


# ---- the network itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["bitrix24", "yandex", "amocrm"])
def test_read_timeout_is_transient_and_unconfirmed(fake, session, provider):
    fake.reply(200, {"access_token": "late"}, delay=0.6)
    adapters = {
        "bitrix24": Bitrix24OAuth(session, 0.2, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, oauth_url=fake.url),
        "yandex": YandexOAuth(session, 0.2, client_id="c", client_secret="s", oauth_url=fake.url, login_url=fake.url),
        "amocrm": AmoCRMOAuth(
            session,
            0.2,
            client_id="c",
            client_secret="s",
            redirect_uri=AMO_REDIRECT,
            base_url=f"{fake.url}/{{subdomain}}",
            authorize_url=fake.url,
        ),
    }
    error = refresh_error(adapters[provider], provider)
    assert (error.code, error.kind, error.unconfirmed) == ("timeout", TRANSIENT, True), (
        "the request reached the provider: its answer may have rotated the pair"
    )


def test_refused_connection_is_transient_and_confirmed_unsent(session):
    closed = f"http://127.0.0.1:{free_port()}"
    adapter = Bitrix24OAuth(session, TIMEOUT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, oauth_url=closed)
    error = refresh_error(adapter, "bitrix24")
    assert (error.code, error.kind, error.unconfirmed) == ("connection_error", TRANSIENT, False)


@pytest.mark.parametrize("expires_in", ["soon", [1], {"a": 1}])
def test_a_garbled_lifetime_in_a_200_is_transient_and_unconfirmed(fake, bitrix, expires_in):
    """The provider issued (and rotated) the pair; its lifetime is unreadable: keep the old pair, remember."""
    body = dict(payload("oauth-refresh-response.json"), expires=None, expires_in=expires_in)
    fake.reply(200, body, "application/json")
    error = refresh_error(bitrix, "bitrix24")
    assert (error.code, error.kind, error.unconfirmed) == ("bad_response", TRANSIENT, True)
