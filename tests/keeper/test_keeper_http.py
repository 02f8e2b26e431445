"""The token keeper's entry points over real HTTP: the app under gunicorn (2 workers) beside the sandbox.

Covers the cron endpoint, the token endpoint with global and per-portal admin tokens, amoCRM account
registration (pair, code, callback flow), the Yandex connect flow, /metrics and the admin status, and how
a credential that needs re-authorisation shows up everywhere and heals. The `flask tokens …` commands run
in-process. One stack serves the module: each test creates what it needs (portals, accounts) and leaves
nothing due behind.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet

from app import create_app
from database import audit_log, credential_history, credentials, task_runs
from models.cipher import Cipher
from models.vault import TokenSet, Vault
from scripts.stack import Stack
from tests.conftest import make_config
from tests.factories import make_credential
from tests.integration.helpers import (
    app_db,
    boot_data,
    frame_post,
    mint,
    open_connect_link,
    portal_info,
    press_connect,
)

RUN_KEYS = {
    "run_id",
    "due",
    "refreshed",
    "failed",
    "needs_reauth",
    "skipped_locked",
    "left",
    "duration_ms",
    "fresh",
    "budget_exhausted",
    "errors",
    "uninstalls",  # pending ONAPPUNINSTALL events re-checked by the same run (models/install.py)
}
AHEAD_SECONDS = 120
SHORT_TTL = 90  # due at once (< AHEAD_SECONDS) yet above the 60 s a REST call refreshes at by itself
YEAR = 365 * 86400


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Sandbox (2 portals) + app under gunicorn; REFRESH_AHEAD_SECONDS makes short-lived tokens due."""
    tmp = tmp_path_factory.mktemp("keeper-http")
    running = Stack(
        database_path=str(tmp / "keeper.db"),
        portals=2,
        log_dir=tmp,
        extra_app_env={"REFRESH_AHEAD_SECONDS": str(AHEAD_SECONDS), "REFRESH_BACKOFF_SECONDS": "0.01"},
    )
    yield running
    running.stop()


# ---- helpers ----------------------------------------------------------------------------------------------


def rows(stack, table, *where) -> list[dict]:
    """Rows of one of the app's tables (state is checked in the database, not only in responses)."""
    db = app_db(stack)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where).order_by(table.c.id))]
    finally:
        db.dispose()


def decrypt(stack, value: str) -> str:
    """A token as the vault stored it, decrypted with the app's key."""
    return Fernet(stack.env["TOKEN_ENCRYPTION_KEY"].split(",")[0]).decrypt(value.encode()).decode()


def cron(stack, body=None, *, token: str | None = "", params=None, data=None, headers=None) -> requests.Response:
    """POST /tasks/refresh (the right cron token unless told otherwise)."""
    sent = dict(headers or {})
    if token is not None:
        sent["X-Cron-Token"] = token or stack.env["CRON_TOKEN"]
    return requests.post(
        f"{stack.app_url}/tasks/refresh", json=body, data=data, params=params, headers=sent, timeout=60
    )


def run(stack, **body) -> dict:
    """One refresh run that must succeed; its report."""
    response = cron(stack, body or None)
    assert response.status_code == 200, response.text
    return response.json()


def admin(stack, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    """An admin endpoint with X-API-Token (the global token unless another is given)."""
    return requests.request(
        method,
        f"{stack.app_url}{path}",
        timeout=60,
        headers={"X-API-Token": token or stack.env["ADMIN_API_TOKEN"]},
        **kwargs,
    )


def bearer_get(stack, path: str, bearer: str) -> requests.Response:
    return requests.get(f"{stack.app_url}{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def bearer_post(stack, path: str, bearer: str, **kwargs) -> requests.Response:
    return requests.post(f"{stack.app_url}{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=30, **kwargs)


def refresh_counts(stack, provider: str) -> dict:
    """The sandbox's refresh counters for one provider."""
    return stack.control("GET", "/_sandbox/oauth/refreshes", expect=200)[provider]


def mint_amocrm(stack, subdomain: str) -> dict:
    """A fresh amoCRM pair for an account of the sandbox (created if new)."""
    body = {"provider": "amocrm", "subdomain": subdomain}
    return stack.control("POST", "/_sandbox/oauth/tokens", body, expect=200)["tokens"][0]


def notifications(stack, name: str) -> list[dict]:
    """Notifications on a sandbox portal (its state keeps the newest one per TAG)."""
    return stack.control("GET", f"/_sandbox/portals/{name}/state", expect=200)["notifications"]


def notify_calls(stack, name: str) -> int:
    """How many times the app called im.notify.system.add on a sandbox portal (the call log keeps all)."""
    calls = stack.control("GET", f"/_sandbox/portals/{name}/calls", expect=200)
    return sum(1 for c in calls if c["method"] == "im.notify.system.add")


@dataclass
class Installed:
    """A sandbox portal with the app installed (ONAPPINSTALL from the sandbox)."""

    name: str
    member_id: str
    domain: str
    application_token: str

    def open(self, stack, user_id: int) -> dict:
        """The user opens the app in the portal: the verified page's boot data (bearer token inside)."""
        response = frame_post(
            stack, mint(stack, portal=self.name, user_id=user_id), application_token=self.application_token
        )
        assert response.status_code == 200, response.text
        return boot_data(response.text)


def install(stack, name: str) -> Installed:
    result = stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result
    info = portal_info(stack, name)
    return Installed(name, info["member_id"], info["domain"], info["application_token"])


@contextlib.contextmanager
def short_lived_bitrix_tokens(stack):
    """While inside, the sandbox issues Bitrix24 access tokens that are due at once."""
    stack.control("POST", "/_sandbox/config", {"access_ttl": SHORT_TTL}, expect=200)
    try:
        yield
    finally:
        stack.control("POST", "/_sandbox/config", {"access_ttl": 3600}, expect=200)


def new_due_portal(stack) -> Installed:
    """A new portal installed with a short-lived token, its credential the only one due.

    Whatever an earlier test left due is refreshed first, and the refresh counters start from zero.
    """
    run(stack)
    with short_lived_bitrix_tokens(stack):
        portal = install(stack, stack.control("POST", "/_sandbox/portals", {}, expect=201)["name"])
    stack.control("DELETE", "/_sandbox/oauth/refreshes", expect=200)
    return portal


@pytest.fixture(scope="module")
def main_portal(stack) -> Installed:
    return install(stack, "portal1")


@pytest.fixture(scope="module")
def other_portal(stack) -> Installed:
    return install(stack, "portal2")


@pytest.fixture(scope="module")
def admin_boot(stack, main_portal) -> dict:
    """The portal admin (user 1) opened the app: boot data with a bearer token."""
    return main_portal.open(stack, 1)


@pytest.fixture(scope="module")
def user_boot(stack, main_portal) -> dict:
    """A non-admin employee (user 2) opened the app."""
    return main_portal.open(stack, 2)


def metric_values(text: str) -> dict[str, float]:
    """Prometheus samples as {"name{labels}": value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# ---- POST /tasks/refresh ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_refresh_task_needs_the_cron_token(stack, token):
    before = len(rows(stack, task_runs))
    response = cron(stack, token=token)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized" and set(response.json()) == {"error", "message"}
    assert len(rows(stack, task_runs)) == before, "no run was started"


@pytest.mark.parametrize(
    "request_args",
    [
        {"body": {"provider": "nope"}},
        {"body": {"limit": 0}},
        {"body": {"limit": "many"}},
        {"body": {"budget_s": 0}},
        {"body": {"budget_s": 99999}},
        {"params": {"limit": "-1"}},
        {"params": {"provider": "google"}},
        {"data": "not json", "headers": {"Content-Type": "application/json"}},
        {"body": ["a", "list"]},
    ],
    ids=[
        "provider",
        "limit-0",
        "limit-text",
        "budget-0",
        "budget-huge",
        "query-limit",
        "query-provider",
        "not-json",
        "json-list",
    ],
)
def test_refresh_task_refuses_bad_parameters(stack, request_args):
    before = len(rows(stack, task_runs))
    response = cron(
        stack,
        request_args.get("body"),
        params=request_args.get("params"),
        data=request_args.get("data"),
        headers=request_args.get("headers"),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request" and set(response.json()) == {"error", "message"}
    assert len(rows(stack, task_runs)) == before


def test_refresh_task_refreshes_what_is_due_exactly_once(stack):
    portal = new_due_portal(stack)
    report = run(stack)
    assert set(report) == RUN_KEYS
    counts = {k: report[k] for k in ("due", "refreshed", "failed", "needs_reauth", "left", "errors")}
    assert counts == {"due": 1, "refreshed": 1, "failed": 0, "needs_reauth": 0, "left": 0, "errors": {}}
    assert report["budget_exhausted"] is False
    counted = refresh_counts(stack, "bitrix24")
    assert counted["total"] == 1 and counted["reuse_attempts"] == 0
    [grant_id] = counted["by_grant"]
    grant = stack.control("GET", f"/_sandbox/oauth/grants/{grant_id}", expect=200)
    [cred] = rows(stack, credentials, credentials.c.account == portal.member_id)
    assert (cred["subject"], cred["status"], cred["version"]) == ("portal", "active", 2)
    assert decrypt(stack, cred["refresh_token_enc"]) == grant["refresh_token"], "the new pair was stored"
    [recorded] = rows(stack, task_runs, task_runs.c.run_id == report["run_id"])
    assert (recorded["task"], recorded["trigger"]) == ("refresh", "http")
    assert recorded["finished_at"] >= recorded["started_at"]
    assert json.loads(recorded["report"])["refreshed"] == 1

    again = run(stack, provider="bitrix24", limit=10, budget_s=30)
    assert (again["due"], again["refreshed"], again["failed"]) == (0, 0, 0)
    assert refresh_counts(stack, "bitrix24")["total"] == 1, "nothing is spent twice"
    [recorded] = rows(stack, task_runs, task_runs.c.run_id == again["run_id"])
    assert recorded["provider"] == "bitrix24"


# ---- the token endpoint -------------------------------------------------------------------------------------


def token_reads(stack, target: str, action: str = "token_read") -> list[dict]:
    return rows(stack, audit_log, audit_log.c.target == target, audit_log.c.action == action)


def test_token_endpoint_needs_an_admin_token(stack, main_portal):
    target = f"bitrix24/{main_portal.member_id}"
    before = len(rows(stack, audit_log, audit_log.c.target == target))
    url = f"{stack.app_url}/api/admin/tokens/{target}"
    assert requests.get(url, timeout=30).status_code == 401
    wrong = requests.get(url, headers={"X-API-Token": "not-the-token"}, timeout=30)
    assert wrong.status_code == 401 and set(wrong.json()) == {"error", "message"}
    assert "access_token" not in wrong.text
    assert len(rows(stack, audit_log, audit_log.c.target == target)) == before, "nothing was read"


def test_token_endpoint_gives_a_working_access_token_and_never_the_refresh_token(stack, main_portal):
    target = f"bitrix24/{main_portal.member_id}"
    before = len(token_reads(stack, target))
    response = admin(stack, "GET", f"/api/admin/tokens/{target}")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"provider", "account", "access_token", "expires_at", "version"}
    assert body["expires_at"] > time.time() + 60
    [cred] = rows(stack, credentials, credentials.c.account == main_portal.member_id, credentials.c.subject == "portal")
    assert decrypt(stack, cred["refresh_token_enc"]) not in response.text
    assert "refresh" not in response.text
    # The token works at the OAuth server for this portal.
    info = requests.get(f"{stack.sandbox['oauth']}/rest/app.info", params={"auth": body["access_token"]}, timeout=30)
    assert info.status_code == 200 and info.json()["result"]["install"]["member_id"] == main_portal.member_id
    admin(stack, "GET", f"/api/admin/tokens/{target}", params={"token": "ignored"})
    reads = token_reads(stack, target)
    assert len(reads) == before + 2, "every read is audited"
    assert reads[-1]["actor"] == "admin:global"
    assert body["access_token"] not in reads[-1]["detail"]


@pytest.mark.parametrize("path", ["bitrix24/0123456789abcdef", "amocrm/nosuchcrm", "google/anything"])
def test_token_endpoint_unknown_credential_is_404(stack, path):
    response = admin(stack, "GET", f"/api/admin/tokens/{path}")
    assert response.status_code == 404 and set(response.json()) == {"error", "message"}
    assert token_reads(stack, path, "token_read_failed"), "failed reads are audited too"


def test_token_endpoint_refreshes_a_due_credential_first(stack):
    minted = mint_amocrm(stack, "duecrm")
    registered = admin(
        stack,
        "POST",
        "/api/admin/amocrm/accounts",
        json={
            "subdomain": "duecrm",
            "access_token": minted["access_token"],
            "refresh_token": minted["refresh_token"],
            "expires_in": 60,
        },
    )
    assert registered.status_code == 201, registered.text
    before = refresh_counts(stack, "amocrm")["by_grant"].get(minted["grant_id"], 0)
    response = admin(stack, "GET", "/api/admin/tokens/amocrm/duecrm")
    assert response.status_code == 200, response.text
    body = response.json()
    grant = stack.control("GET", f"/_sandbox/oauth/grants/{minted['grant_id']}", expect=200)
    assert refresh_counts(stack, "amocrm")["by_grant"][minted["grant_id"]] == before + 1
    assert body["access_token"] == grant["access_token"] != minted["access_token"]
    assert body["version"] == 2 and body["expires_at"] > time.time() + 3600
    assert grant["refresh_token"] not in response.text
    account = requests.get(
        f"{stack.base}/amocrm/duecrm/api/v4/account",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=30,
    )
    assert account.status_code == 200 and account.json()["subdomain"] == "duecrm"
    # Fresh now: the next read spends nothing.
    assert admin(stack, "GET", "/api/admin/tokens/amocrm/duecrm").json()["version"] == 2
    assert refresh_counts(stack, "amocrm")["by_grant"][minted["grant_id"]] == before + 1


def test_portal_admin_token_is_confined_to_its_portal(stack, main_portal, other_portal, admin_boot, user_boot):
    assert bearer_post(stack, "/api/portal/admin-token", user_boot["token"]).status_code == 403
    issued = bearer_post(stack, "/api/portal/admin-token", admin_boot["token"])
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    own = admin(stack, "GET", f"/api/admin/tokens/bitrix24/{main_portal.member_id}", token)
    assert own.status_code == 200 and own.json()["account"] == main_portal.member_id
    reads = token_reads(stack, f"bitrix24/{main_portal.member_id}")
    assert reads[-1]["actor"] == f"admin:portal:{main_portal.member_id}"
    assert token not in json.dumps(reads)
    foreign = admin(stack, "GET", f"/api/admin/tokens/bitrix24/{other_portal.member_id}", token)
    assert foreign.status_code == 404, "another portal's credential does not exist for this token"
    for method, path in (
        ("GET", "/api/admin/amocrm/accounts"),
        ("POST", "/api/admin/amocrm/accounts"),
        ("DELETE", "/api/admin/amocrm/accounts/duecrm"),
        ("POST", "/api/admin/amocrm/authorize"),
    ):
        assert admin(stack, method, path, token, json={}).status_code == 403, path
    status = admin(stack, "GET", "/api/admin/status", token).json()
    assert status["portal"]["member_id"] == main_portal.member_id
    assert {c["portal_id"] for c in status["credentials"]} == {status["portal"]["id"]}
    assert not any(k.endswith("_enc") for c in status["credentials"] for k in c)


# ---- amoCRM accounts ------------------------------------------------------------------------------------------


def amo_code(stack, subdomain: str) -> str:
    """Follow the sandbox's amoCRM consent redirect by hand and read the code from its Location."""
    response = requests.get(
        f"{stack.base}/amocrm/oauth",
        allow_redirects=False,
        timeout=30,
        params={"client_id": stack.env["AMOCRM_CLIENT_ID"], "state": "by-hand", "subdomain": subdomain},
    )
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["referer"] == [f"{subdomain}.amocrm.ru"] and query["state"] == ["by-hand"]
    return query["code"][0]


def test_amocrm_accounts_from_a_pair_and_from_a_code(stack):
    minted = mint_amocrm(stack, "paircrm")
    created = admin(
        stack,
        "POST",
        "/api/admin/amocrm/accounts",
        json={"subdomain": "PairCRM", "access_token": minted["access_token"], "refresh_token": minted["refresh_token"]},
    )
    assert created.status_code == 201, created.text
    assert created.headers["Location"].endswith("/api/admin/amocrm/accounts/paircrm")
    assert (created.json()["account"], created.json()["status"]) == ("paircrm", "active")

    stack.control("POST", "/_sandbox/amocrm/accounts", {"subdomain": "codecrm"}, expect=201)
    by_code = admin(
        stack, "POST", "/api/admin/amocrm/accounts", json={"subdomain": "codecrm", "code": amo_code(stack, "codecrm")}
    )
    assert by_code.status_code == 201, by_code.text
    [cred] = rows(stack, credentials, credentials.c.provider == "amocrm", credentials.c.account == "codecrm")
    token = decrypt(stack, cred["access_token_enc"])
    probe = requests.get(
        f"{stack.base}/amocrm/codecrm/api/v4/account", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert probe.status_code == 200, "the exchanged pair is real"

    listed = admin(stack, "GET", "/api/admin/amocrm/accounts")
    assert {"paircrm", "codecrm"} <= {a["account"] for a in listed.json()["accounts"]}
    assert minted["access_token"] not in listed.text and minted["refresh_token"] not in listed.text

    assert admin(stack, "DELETE", "/api/admin/amocrm/accounts/paircrm").status_code == 204
    assert admin(stack, "DELETE", "/api/admin/amocrm/accounts/paircrm").status_code == 404
    assert "paircrm" not in {a["account"] for a in admin(stack, "GET", "/api/admin/amocrm/accounts").json()["accounts"]}
    assert rows(stack, credentials, credentials.c.account == "paircrm") == []


def test_amocrm_reused_code_is_refused(stack):
    stack.control("POST", "/_sandbox/amocrm/accounts", {"subdomain": "oncecrm"}, expect=201)
    body = {"subdomain": "oncecrm", "code": amo_code(stack, "oncecrm")}
    assert admin(stack, "POST", "/api/admin/amocrm/accounts", json=body).status_code == 201
    again = admin(stack, "POST", "/api/admin/amocrm/accounts", json=body)
    assert again.status_code == 400 and again.json()["error"] == "amocrm_refused"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"json": {"subdomain": "bad_sub!", "access_token": "a", "refresh_token": "r"}}, "bad_subdomain"),
        ({"json": {"subdomain": "-dash", "access_token": "a", "refresh_token": "r"}}, "bad_subdomain"),
        ({"json": {"subdomain": "okcrm"}}, "missing_fields"),
        ({"json": {"subdomain": "okcrm", "access_token": "a"}}, "missing_fields"),
        (
            {"json": {"subdomain": "okcrm", "access_token": "a", "refresh_token": "r", "expires_in": "soon"}},
            "bad_request",
        ),
        ({"json": {"subdomain": "okcrm", "access_token": "a", "refresh_token": "r", "expires_in": -5}}, "bad_tokens"),
        ({"data": "subdomain=okcrm", "headers": {"Content-Type": "application/json"}}, "bad_request"),
        ({"json": ["okcrm"]}, "bad_request"),
    ],
    ids=[
        "bad-chars",
        "leading-dash",
        "no-tokens",
        "no-refresh",
        "expires-text",
        "expires-negative",
        "not-json",
        "json-list",
    ],
)
def test_amocrm_registration_refuses_bad_input(stack, kwargs, error):
    headers = {"X-API-Token": stack.env["ADMIN_API_TOKEN"], **kwargs.pop("headers", {})}
    response = requests.post(f"{stack.app_url}/api/admin/amocrm/accounts", headers=headers, timeout=30, **dict(kwargs))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error and set(response.json()) == {"error", "message"}
    assert rows(stack, credentials, credentials.c.account == "okcrm") == []


def test_amocrm_connect_flow_through_the_callback(stack):
    started = admin(stack, "POST", "/api/admin/amocrm/authorize")
    assert started.status_code == 200
    url = started.json()["url"]
    assert url.startswith(f"{stack.app_url}/auth/amocrm/start?ticket=")
    session, confirm = open_connect_link(url)
    assert confirm.status_code == 200 and 'data-testid="connect-page"' in confirm.text
    # The sandbox approves and redirects to AMOCRM_REDIRECT_URI (the app's callback) with code and referer.
    page = press_connect(session, confirm)
    assert page.url.startswith(f"{stack.app_url}/auth/amocrm/callback?")
    assert page.status_code == 200 and "amoCRM подключён" in page.text
    [cred] = rows(stack, credentials, credentials.c.provider == "amocrm", credentials.c.account == "sandboxcrm")
    assert cred["status"] == "active"
    assert decrypt(stack, cred["refresh_token_enc"]) not in page.text


@pytest.mark.parametrize("state", ["forged", None, "signed-elsewhere"])
def test_amocrm_callback_with_a_bad_state_is_a_400_page(stack, state):
    if state == "signed-elsewhere":
        # A signed token is no state: states are single-use rows of the app's database.
        state = jwt.encode(
            {"by": "admin", "aud": "amocrm-connect-state", "iss": stack.app_url, "exp": int(time.time()) + 600},
            "x" * 40,
            algorithm="HS256",
        )
    code = amo_code(stack, "sandboxcrm")
    params = {"code": code, "referer": "sandboxcrm.amocrm.ru", **({"state": state} if state else {})}
    page = requests.get(f"{stack.app_url}/auth/amocrm/callback", params=params, timeout=30)
    assert page.status_code == 400 and 'data-testid="error-page"' in page.text
    assert page.headers["Content-Type"].startswith("text/html")


# ---- Yandex connect ----------------------------------------------------------------------------------------------


def test_yandex_connect_refresh_and_token_endpoint(stack, main_portal, admin_boot, user_boot):
    assert bearer_post(stack, "/api/integrations/yandex/connect", user_boot["token"]).status_code == 403
    started = bearer_post(stack, "/api/integrations/yandex/connect", admin_boot["token"])
    assert started.status_code == 200, started.text
    url = started.json()["url"]
    assert url.startswith(f"{stack.app_url}/auth/yandex/start?ticket=")
    # The connected account gets a short-lived token so that the next run has something to do.
    stack.control("POST", "/_sandbox/config", {"yandex_access_ttl": SHORT_TTL}, expect=200)
    try:
        session, confirm = open_connect_link(url)
        page = press_connect(session, confirm)  # confirm → sandbox consent → app callback
    finally:
        stack.control("POST", "/_sandbox/config", {"yandex_access_ttl": YEAR}, expect=200)
    assert page.url.startswith(f"{stack.app_url}/auth/yandex/callback?")
    assert page.status_code == 200 and "Яндекс подключён" in page.text, page.text
    status = bearer_get(stack, "/api/integrations", admin_boot["token"]).json()["yandex"]
    assert (status["connected"], status["status"], status["account"]) == (True, "active", "sandbox.user@yandex.ru")
    [cred] = rows(stack, credentials, credentials.c.provider == "yandex")
    assert cred["label"] == "sandbox.user@yandex.ru" and cred["account"].isdigit()
    assert decrypt(stack, cred["refresh_token_enc"]) not in page.text

    stack.control("DELETE", "/_sandbox/oauth/refreshes", expect=200)
    report = run(stack, provider="yandex")
    assert (report["due"], report["refreshed"], report["failed"]) == (1, 1, 0)
    [grant_id] = refresh_counts(stack, "yandex")["by_grant"]
    grant = stack.control("GET", f"/_sandbox/oauth/grants/{grant_id}", expect=200)
    response = admin(stack, "GET", f"/api/admin/tokens/yandex/{cred['account']}")
    assert response.status_code == 200, response.text
    assert response.json()["access_token"] == grant["access_token"] and response.json()["version"] == 2
    assert grant["refresh_token"] not in response.text
    who = requests.get(
        f"{stack.sandbox['yandex_login']}/info",
        headers={"Authorization": f"OAuth {response.json()['access_token']}"},
        timeout=30,
    )
    assert who.status_code == 200 and who.json()["id"] == cred["account"]
    assert refresh_counts(stack, "yandex")["total"] == 1, "the token endpoint found it fresh"


def test_yandex_connect_refuses_bad_tickets_and_states(stack, main_portal):
    # Tokens signed with the app's own key are no tickets: tickets are single-use rows of its database.
    key, now = stack.env["SESSION_SIGNING_KEY"], int(time.time())
    expired = jwt.encode(
        {"pid": 1, "uid": 1, "aud": "yandex-connect-ticket", "iss": stack.app_url, "exp": now - 30},
        key,
        algorithm="HS256",
    )
    wrong_audience = jwt.encode(
        {"pid": 1, "uid": 1, "aud": "yandex-connect-state", "iss": stack.app_url, "exp": now + 300},
        key,
        algorithm="HS256",
    )
    for ticket in ("garbage", expired, wrong_audience, ""):
        page = requests.get(
            f"{stack.app_url}/auth/yandex/start", params={"ticket": ticket}, timeout=30, allow_redirects=False
        )
        assert page.status_code == 400 and 'data-testid="error-page"' in page.text, ticket
    for params in ({"code": "1234567", "state": "forged"}, {"error": "access_denied", "state": "x"}):
        page = requests.get(f"{stack.app_url}/auth/yandex/callback", params=params, timeout=30)
        assert page.status_code == 400 and 'data-testid="error-page"' in page.text, params


def test_yandex_connect_is_bound_to_the_browser_that_started_it(stack, main_portal, admin_boot):
    """A start link opened in another browser (no nonce cookie) cannot attach that browser's Yandex account."""
    url = bearer_post(stack, "/api/integrations/yandex/connect", admin_boot["token"]).json()["url"]
    start = requests.get(url, timeout=30, allow_redirects=False)
    assert start.status_code == 200 and "yandex_connect_nonce" in start.headers["Set-Cookie"]
    assert "HttpOnly" in start.headers["Set-Cookie"] and "SameSite=Lax" in start.headers["Set-Cookie"]
    ticket = parse_qs(urlsplit(url).query)["ticket"][0]
    sent = requests.post(
        f"{stack.app_url}/auth/yandex/start",
        data={"ticket": ticket},
        timeout=30,
        cookies=start.cookies,
        allow_redirects=False,
    )
    assert sent.status_code == 303
    consent = requests.get(sent.headers["Location"], timeout=30, allow_redirects=False)
    callback = consent.headers["Location"]
    page = requests.get(callback, timeout=30)  # no cookie: a different browser
    assert page.status_code == 400 and 'data-testid="error-page"' in page.text


# ---- /metrics and the admin status ------------------------------------------------------------------------------


def test_metrics_and_status_agree_with_the_database_on_every_worker(stack, main_portal):
    report = run(stack)
    texts = []
    for _ in range(8):  # fresh connections: both gunicorn workers answer some of them
        response = requests.get(f"{stack.app_url}/metrics", timeout=30, headers={"Connection": "close"})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        texts.append(re.sub(r"(?m)^b24_refresh_last_run_age_seconds .*$", "", response.text))
    assert all(text == texts[0] for text in texts), "every worker reads the same shared counters"
    samples = metric_values(texts[0])
    creds = rows(stack, credentials)
    for provider in ("bitrix24", "yandex", "amocrm"):
        for status in ("active", "needs_reauth", "revoked"):
            expected = sum(1 for c in creds if (c["provider"], c["status"]) == (provider, status))
            assert samples[f'b24_credentials{{provider="{provider}",status="{status}"}}'] == expected
    http_runs = rows(stack, task_runs, task_runs.c.trigger == "http")
    assert samples['b24_refresh_runs_total{trigger="http"}'] == len(http_runs)
    assert samples['b24_portals{status="installed"}'] >= 1
    assert "# TYPE b24_refresh_failures_total counter" in texts[0]

    status = admin(stack, "GET", "/api/admin/status").json()
    summary: dict = {}
    for c in creds:
        summary.setdefault(c["provider"], {}).setdefault(c["status"], 0)
        summary[c["provider"]][c["status"]] += 1
    assert status["credentials"] == summary
    assert status["last_run"]["run_id"] == report["run_id"]
    assert status["last_run"]["report"]["refreshed"] == report["refreshed"]
    assert status["due_now"] == 0
    assert admin(stack, "GET", "/api/admin/status", "wrong").status_code == 401


# ---- needs_reauth everywhere, then healed ------------------------------------------------------------------------


def test_needs_reauth_surfaces_everywhere_and_heals_when_the_admin_opens_the_app(stack):
    portal = new_due_portal(stack)
    with short_lived_bitrix_tokens(stack):
        first = run(stack)  # the refreshed pair is short-lived too: the credential stays due
    assert (first["due"], first["refreshed"]) == (1, 1)
    [grant_id] = refresh_counts(stack, "bitrix24")["by_grant"]  # the portal credential's grant
    boot = portal.open(stack, 1)  # the admin's own pair: a working token besides the portal credential
    stack.control("POST", f"/_sandbox/oauth/grants/{grant_id}/revoke", expect=200)
    [cred] = rows(stack, credentials, credentials.c.account == portal.member_id, credentials.c.subject == "portal")

    failed = run(stack, provider="bitrix24")
    assert (failed["failed"], failed["needs_reauth"], failed["errors"]) == (1, 0, {"invalid_grant": 1})
    assert notifications(stack, portal.name) == []
    reauth = run(stack, provider="bitrix24")
    assert (reauth["failed"], reauth["needs_reauth"]) == (1, 1)
    [cred] = rows(stack, credentials, credentials.c.id == cred["id"])
    assert (cred["status"], cred["failure_count"], cred["last_error"]) == ("needs_reauth", 2, "invalid_grant")

    me = bearer_get(stack, "/api/current-user", boot["token"]).json()
    assert [(a["code"], a["provider"]) for a in me["alerts"]] == [("needs_reauth", "bitrix24")]
    status = admin(stack, "GET", "/api/admin/status").json()
    assert [(r["provider"], r["account"], r["subject"]) for r in status["needs_reauth"]] == [
        ("bitrix24", portal.member_id, "portal")
    ]
    samples = metric_values(requests.get(f"{stack.app_url}/metrics", timeout=30).text)
    assert samples['b24_credentials{provider="bitrix24",status="needs_reauth"}'] == 1
    assert samples['b24_credentials_needs_reauth_total{provider="bitrix24"}'] >= 1
    conflict = admin(stack, "GET", f"/api/admin/tokens/bitrix24/{portal.member_id}")
    assert conflict.status_code == 409 and conflict.json()["error"] == "needs_reauth"
    [note] = notifications(stack, portal.name)
    assert (note["user_id"], note["tag"], note["from_user_id"]) == (1, "telemost_reauth_bitrix24", 1)
    assert "invalid_grant" in note["message"]
    assert run(stack, provider="bitrix24")["due"] == 0
    assert notify_calls(stack, portal.name) == 1, "told once"

    # The admin opens the app again: the fresh pair from the frame revives the portal credential.
    portal.open(stack, 1)
    [cred] = rows(stack, credentials, credentials.c.id == cred["id"])
    assert (cred["status"], cred["failure_count"], cred["last_error"]) == ("active", 0, None)
    assert bearer_get(stack, "/api/current-user", boot["token"]).json()["alerts"] == []
    assert admin(stack, "GET", "/api/admin/status").json()["needs_reauth"] == []
    healed = admin(stack, "GET", f"/api/admin/tokens/bitrix24/{portal.member_id}")
    assert healed.status_code == 200
    samples = metric_values(requests.get(f"{stack.app_url}/metrics", timeout=30).text)
    assert samples['b24_credentials{provider="bitrix24",status="needs_reauth"}'] == 0


# ---- a credential no configured key decrypts ------------------------------------------------------------------


def test_an_undecryptable_credential_is_quarantined_and_the_run_goes_on(stack):
    """Finding 5: a row written with a foreign key among healthy due rows, after a run that died holding
    the healthy rows' leases without sending anything (what the old InvalidToken abort left behind)."""
    portal = new_due_portal(stack)
    healthy_amo = []
    for sub in ("healthycrm1", "healthycrm2"):
        minted = mint_amocrm(stack, sub)
        created = admin(
            stack,
            "POST",
            "/api/admin/amocrm/accounts",
            json={
                "subdomain": sub,
                "access_token": minted["access_token"],
                "refresh_token": minted["refresh_token"],
                "expires_in": 30,
            },
        )
        assert created.status_code == 201, created.text
        healthy_amo.append(sub)
    db = app_db(stack)
    try:
        foreign = Vault(db, Cipher([Fernet.generate_key().decode()]))
        now = int(time.time())
        broken_id = foreign.store(
            "amocrm", "foreigncrm", "account", TokenSet("foreign-access", "foreign-refresh", now + 30, now + 60 * 86400)
        )
        healthy = [
            c["id"] for c in rows(stack, credentials, credentials.c.account.in_([portal.member_id, *healthy_amo]))
        ]
        assert len(healthy) == 3
        with db.write() as conn:  # a crashed run's leases: expired, no request ever sent under them
            conn.execute(
                sa.update(credentials)
                .where(credentials.c.id.in_(healthy))
                .values(lease_owner="crashed-run", lease_until=time.time() - 1)
            )
    finally:
        db.dispose()

    first = cron(stack)
    assert first.status_code == 200, first.text
    report = first.json()
    counts = {k: report[k] for k in ("due", "refreshed", "failed", "needs_reauth", "left", "errors")}
    assert counts == {
        "due": 4,
        "refreshed": 3,
        "failed": 1,
        "needs_reauth": 0,
        "left": 0,
        "errors": {"undecryptable": 1},
    }
    [broken] = rows(stack, credentials, credentials.c.id == broken_id)
    assert (
        broken["status"],
        broken["last_error"],
        broken["lease_owner"],
        broken["lease_until"],
        broken["refresh_sent_at"],
        broken["version"],
    ) == ("broken", "undecryptable", None, None, None, 1)
    for cred in rows(stack, credentials, credentials.c.id.in_(healthy)):
        assert (
            cred["status"],
            cred["version"],
            cred["unconfirmed_attempt"],
            cred["lease_owner"],
            cred["refresh_sent_at"],
        ) == ("active", 2, False, None, None), cred["account"]

    second = cron(stack)
    assert second.status_code == 200, second.text
    assert (second.json()["due"], second.json()["failed"]) == (0, 0)

    samples = metric_values(requests.get(f"{stack.app_url}/metrics", timeout=30).text)
    assert samples['b24_credentials{provider="amocrm",status="broken"}'] == 1
    status = admin(stack, "GET", "/api/admin/status").json()
    assert status["credentials"]["amocrm"]["broken"] == 1
    assert [(r["id"], r["account"], r["last_error"]) for r in status["broken"]] == [
        (broken_id, "foreigncrm", "undecryptable")
    ]
    refused = admin(stack, "GET", "/api/admin/tokens/amocrm/foreigncrm")
    assert refused.status_code == 409
    assert refused.json()["error"] == "credential_broken" and "TOKEN_ENCRYPTION_KEY" in refused.json()["message"]

    # The operator gives up on it: a broken account can still be removed (the module's later tests decrypt
    # every row with the app's key).
    for sub in ("foreigncrm", *healthy_amo):
        assert admin(stack, "DELETE", f"/api/admin/amocrm/accounts/{sub}").status_code == 204
    assert rows(stack, credentials, credentials.c.id == broken_id) == []


# ---- flask tokens … (in-process) ---------------------------------------------------------------------------------


def test_cli_refresh_prints_the_report(runner, services):
    # BITRIX24_OAUTH_URL points at a closed port in the test config: a transient failure, kept pair.
    cid = make_credential(services, "bitrix24", "m-cli", access="acc-secret-1", refresh="ref-secret-1", expires_in=30)
    result = runner.invoke(args=["tokens", "refresh", "--provider", "bitrix24", "--limit", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert RUN_KEYS <= set(report)
    counts = {k: report[k] for k in ("due", "refreshed", "failed", "errors")}
    assert counts == {"due": 1, "refreshed": 0, "failed": 1, "errors": {"connection_error": 1}}
    cred = services.vault.get(cid)
    assert (cred.status, cred.refresh_token, cred.failure_count) == ("active", "ref-secret-1", 0)
    assert runner.invoke(args=["tokens", "refresh", "--provider", "google"]).exit_code == 2
    assert runner.invoke(args=["tokens", "refresh", "--budget", "0"]).exit_code == 2


def test_cli_status_prints_json(runner, services):
    make_credential(services, "yandex", "1130000000000001", expires_in=3600)
    runner.invoke(args=["tokens", "refresh"])
    result = runner.invoke(args=["tokens", "status"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert {"portals", "credentials", "needs_reauth", "due_now", "last_run", "recent_runs"} <= set(status)
    assert status["credentials"] == {"yandex": {"active": 1}}
    assert status["last_run"]["trigger"] == "cli" and status["last_run"]["report"]["due"] == 0


def test_cli_list_never_prints_tokens(runner, services):
    make_credential(services, "amocrm", "listcrm", access="amo-access-secret", refresh="amo-refresh-secret")
    make_credential(services, "bitrix24", "m-list", access="b24-access-secret", refresh="b24-refresh-secret")
    result = runner.invoke(args=["tokens", "list"])
    assert result.exit_code == 0
    assert "listcrm" in result.output and "m-list" in result.output
    assert "secret" not in result.output
    only = runner.invoke(args=["tokens", "list", "--provider", "amocrm"]).output
    assert "listcrm" in only and "m-list" not in only


def test_cli_shows_a_quarantined_credential(runner, services):
    make_credential(services, "amocrm", "okcrm")
    now = int(time.time())
    foreign = Vault(services.db, Cipher([Fernet.generate_key().decode()]))
    cid = foreign.store("amocrm", "lostcrm", "account", TokenSet("a", "r", now + 30, now + 60 * 86400))
    refreshed = runner.invoke(args=["tokens", "refresh", "--provider", "amocrm"])
    assert refreshed.exit_code == 0, refreshed.output
    assert json.loads(refreshed.output)["errors"]["undecryptable"] == 1
    listed = runner.invoke(args=["tokens", "list", "--status", "broken"])
    assert listed.exit_code == 0, listed.output
    [line] = listed.output.splitlines()
    assert "lostcrm" in line and "broken" in line and "last_error=undecryptable" in line
    status = json.loads(runner.invoke(args=["tokens", "status"]).output)
    assert status["credentials"]["amocrm"]["broken"] == 1
    assert [(r["id"], r["last_error"]) for r in status["broken"]] == [(cid, "undecryptable")]


def test_cli_rotate_key_re_encrypts_with_the_newest_key(tmp_path):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    cfg = make_config(tmp_path, TOKEN_ENCRYPTION_KEY=old_key)
    apps = []
    try:
        first = create_app(cfg)
        apps.append(first)
        cid = make_credential(first.extensions["services"], "amocrm", "keycrm", refresh="ref-secret-1")
        make_credential(first.extensions["services"], "amocrm", "keycrm", access="acc-2", refresh="ref-2")  # history
        rotating = create_app({**cfg, "TOKEN_ENCRYPTION_KEY": f"{new_key},{old_key}"})
        apps.append(rotating)
        result = rotating.test_cli_runner().invoke(args=["tokens", "rotate-key"])
        assert result.exit_code == 0 and "re-encrypted 2 rows" in result.output, result.output
        after = create_app({**cfg, "TOKEN_ENCRYPTION_KEY": new_key})  # the old key is gone
        apps.append(after)
        cred = after.extensions["services"].vault.get(cid)
        assert (cred.access_token, cred.refresh_token) == ("acc-2", "ref-2")
        assert after.extensions["services"].vault.history(cid)[0]["refresh_token"] == "ref-secret-1"
    finally:
        for application in apps:
            application.extensions["db"].dispose()


def test_no_token_reaches_the_app_log(stack, main_portal):
    """Runs last in the module: whatever the tests above made the app do, its log holds no secret."""
    run(stack)
    secrets_seen = {stack.env["ADMIN_API_TOKEN"], stack.env["CRON_TOKEN"]}
    for table in (credentials, credential_history):
        for row in rows(stack, table):
            secrets_seen.add(decrypt(stack, row["access_token_enc"]))
            if row["refresh_token_enc"]:
                secrets_seen.add(decrypt(stack, row["refresh_token_enc"]))
    log = (stack.log_dir / "app.log").read_text(encoding="utf-8", errors="replace")
    assert "refresh run" in log, "the app does log its runs"
    assert [s for s in secrets_seen if s in log] == []
