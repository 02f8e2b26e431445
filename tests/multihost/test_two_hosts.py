"""Two app hosts on one PostgreSQL, driven at the same time (issue 11 §3).

Host A and host B are separate gunicorn servers (2 workers each) with the production gunicorn.conf.py,
sharing one database and one sandbox; a round-robin front stands where nginx's `upstream` would. Through
both hosts at once: the token keeper's cron run, bot event delivery and the cron's event processing, and
conference creation. Counts come from the sandbox (refresh grants, Open Lines hand-offs, Telemost
meetings), state from the database.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests
import sqlalchemy as sa

from app import create_app
from database import bot_handoffs, bot_inbox, conferences, dialogs, portals
from models.vault import ACCOUNT_SUBJECT, PORTAL_SUBJECT, TokenSet
from tests.conftest import make_config
from tests.integration.helpers import boot_data, frame_post
from tests.multihost.conftest import BOT_PATH

pytestmark = pytest.mark.slow

PORTALS = ("portal1", "portal2", "portal3")


# ---- helpers ------------------------------------------------------------------------------------------------


def in_process_app(stack, tmp_path):
    """The app in this process on the hosts' database and keys: seeds rows and reads state (dispose after)."""
    return create_app(
        make_config(
            tmp_path,
            DATABASE_URL=stack.database_url,
            TOKEN_ENCRYPTION_KEY=stack.env["TOKEN_ENCRYPTION_KEY"],
            SESSION_SIGNING_KEY=stack.env["SESSION_SIGNING_KEY"],
            AUTO_MIGRATE=False,
        )
    )


def select(stack, tmp_path, table, *where) -> list[dict]:
    """Rows of one of the hosts' tables."""
    app = in_process_app(stack, tmp_path)
    try:
        with app.extensions["db"].read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where).order_by(table.c.id))]
    finally:
        app.extensions["db"].dispose()


def at_once(calls: list) -> list:
    """Run every call in its own thread, released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def cron(host: str, stack, task: str, body: dict | None = None) -> dict:
    """POST /tasks/<task> on one host with the cron token; the run's report."""
    response = requests.post(
        f"{host}/tasks/{task}", json=body, headers={"X-Cron-Token": stack.env["CRON_TOKEN"]}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


def install(stack, name: str) -> dict:
    """ONAPPINSTALL from the sandbox (through the front: either host takes it); the portal's sandbox view."""
    result = stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result
    return stack.control("GET", f"/_sandbox/portals/{name}", expect=200)


@pytest.fixture(scope="module")
def installed(two_hosts) -> dict[str, dict]:
    """Every sandbox portal installed, its bot attached to line 1 (alternately through host A and host B)."""
    out = {}
    for n, name in enumerate(PORTALS):
        info = install(two_hosts, name)
        host = two_hosts.hosts[n % 2]
        answer = requests.post(
            f"{host}/api/admin/bot/attach",
            params={"portal": info["member_id"]},
            json={"line_id": "1"},
            headers={"X-API-Token": two_hosts.env["ADMIN_API_TOKEN"]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        out[name] = info
    return out


# ---- the token keeper ---------------------------------------------------------------------------------------

BITRIX_DUE, YANDEX_DUE, AMOCRM_DUE = 60, 20, 20


def seed_due_credentials(stack, tmp_path) -> dict[int, tuple[str, str, str]]:
    """Due credentials of all three providers minted at the sandbox; id → (provider, grant id, account)."""
    minted = [("bitrix24", t) for t in mint(stack, provider="bitrix24", portal="portal1", count=BITRIX_DUE)]
    minted += [("yandex", mint(stack, provider="yandex", login=f"multi{n}@corp.example")[0]) for n in range(YANDEX_DUE)]
    minted += [("amocrm", mint(stack, provider="amocrm", subdomain=f"multi{n}")[0]) for n in range(AMOCRM_DUE)]
    app = in_process_app(stack, tmp_path)
    vault = app.extensions["services"].vault
    soon = int(time.time()) + 30  # inside REFRESH_AHEAD_SECONDS: due now, and marked as in use
    ids = {}
    try:
        for n, (provider, grant) in enumerate(minted):
            tokens = TokenSet(grant["access_token"], grant["refresh_token"], soon, soon + 90 * 86400)
            if provider == "bitrix24":
                account = f"multi-{n}"
                endpoint = grant["server_endpoint"]
                cid = vault.store(provider, account, PORTAL_SUBJECT, tokens, label=grant["grant_id"], endpoint=endpoint)
            else:
                account = grant["subdomain"] if provider == "amocrm" else f"multi-{grant['user_id']}-{n}"
                cid = vault.store(provider, account, ACCOUNT_SUBJECT, tokens, label=grant["grant_id"])
            ids[cid] = (provider, grant["grant_id"], account)
    finally:
        app.extensions["db"].dispose()
    return ids


def mint(stack, **body) -> list[dict]:
    """Fresh grants from the sandbox's OAuth servers."""
    return stack.control("POST", "/_sandbox/oauth/tokens", body, expect=200)["tokens"]


def token_read(host: str, stack, provider: str, account: str) -> requests.Response:
    """Another service of the customer reads a currently valid access token (refreshing a due one first)."""
    return requests.get(
        f"{host}/api/admin/tokens/{provider}/{account}",
        headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]},
        timeout=120,
    )


def test_cron_refresh_on_both_hosts_at_once_refreshes_each_credential_once(two_hosts, tmp_path):
    stack = two_hosts
    ids = seed_due_credentials(stack, tmp_path)
    stack.control("DELETE", "/_sandbox/oauth/refreshes", expect=200)
    a, b = stack.hosts
    amocrm = {account: grant for provider, grant, account in ids.values() if provider == "amocrm"}

    # Two cron runs per host, and meanwhile every amoCRM token read on host A and on host B (request-time
    # refresh of a due credential: the same lease as the cron's).
    runs = [lambda host=host: cron(host, stack, "refresh") for host in (a, b, a, b)]
    reads = [lambda host=host, acc=acc: token_read(host, stack, "amocrm", acc) for acc in amocrm for host in (a, b)]
    answers = at_once(runs + reads)
    reports, read = answers[: len(runs)], answers[len(runs) :]

    assert [(r["failed"], r["needs_reauth"], r["errors"]) for r in reports] == [(0, 0, {})] * 4
    assert sum(r["refreshed"] for r in reports) <= len(ids)
    assert [r.status_code for r in read] == [200] * len(read), [r.text for r in read if r.status_code != 200]
    # A run's `left` may count rows a peer on the other host still held; once all are back, nothing is due.
    assert cron(b, stack, "refresh")["due"] == 0
    counted = stack.control("GET", "/_sandbox/oauth/refreshes", expect=200)
    for provider in ("bitrix24", "yandex", "amocrm"):
        grants = [g for p, g, _ in ids.values() if p == provider]
        by_grant = counted[provider]["by_grant"]
        assert sorted(by_grant.get(g, 0) for g in grants) == [1] * len(grants), f"{provider}: refreshed twice"
        assert counted[provider]["reuse_attempts"] == 0, f"{provider}: a spent refresh token was sent again"
        assert counted[provider]["total"] == len(grants)
    # The database holds each grant's newest pair, as version 2; every reader got the newest access token.
    newest = {g: stack.control("GET", f"/_sandbox/oauth/grants/{g}", expect=200) for _, g, _ in ids.values()}
    app = in_process_app(stack, tmp_path)
    try:
        vault = app.extensions["services"].vault
        for cid, (_, grant_id, _) in ids.items():
            cred = vault.get(cid)
            assert (cred.status, cred.version, newest[grant_id]["rotations"]) == ("active", 2, 1)
            assert cred.refresh_token == newest[grant_id]["refresh_token"], f"credential {cid} lost its newest pair"
    finally:
        app.extensions["db"].dispose()
    for account, answer in zip([acc for acc in amocrm for _ in (a, b)], read, strict=True):
        assert answer.json()["access_token"] == newest[amocrm[account]]["access_token"], f"{account}: stale token"


# ---- bot events ---------------------------------------------------------------------------------------------

DIALOGS = 36


def client_writes(stack, name: str, client_id: str) -> dict:
    """A client opens a new Open Lines dialog on a sandbox portal (the sandbox posts the bot's events)."""
    body = {
        "line_id": 1,
        "client": {"id": client_id, "name": f"Клиент {client_id}"},
        "text": f"вопрос {client_id}",
        "connector": "livechat",
        "chat_id": None,
    }
    return stack.control("POST", f"/_sandbox/portals/{name}/openlines/message", body, expect=200)


def handoffs(stack, name: str) -> Counter:
    """Operator hand-offs the sandbox portal carried out, per chat id."""
    state = stack.control("GET", f"/_sandbox/portals/{name}/state", expect=200)
    return Counter(int(a["chat_id"]) for a in state["openlines"] if a["action"] in ("operator", "transfer"))


def handoff_calls(stack, name: str) -> Counter:
    """Hand-off REST calls the app made on a sandbox portal, per chat id, refused ones included (the sandbox
    refuses a second hand-off of a chat already with an operator, so only the call log shows a double)."""
    calls = stack.control("GET", f"/_sandbox/portals/{name}/calls", expect=200)
    methods = ("imopenlines.bot.session.operator", "imopenlines.bot.session.transfer")
    return Counter(int(c["params"]["CHAT_ID"]) for c in calls if c["method"] in methods)


def test_bot_events_on_both_hosts_are_processed_once_and_each_dialog_transferred_once(two_hosts, installed, tmp_path):
    stack = two_hosts
    a, b = stack.hosts
    # Every event reaches host A and host B at the same instant (the front mirrors the bot path), and the
    # sandbox delivers each one twice besides: four copies of each event, two on each host.
    stack.control("POST", "/_sandbox/config", {"openlines_duplicate_delivery": True}, expect=200)
    before = len(stack.front.hits(BOT_PATH))
    try:
        jobs = [(PORTALS[n % len(PORTALS)], f"{7000 + n}") for n in range(DIALOGS)]
        with ThreadPoolExecutor(12) as pool:
            written = list(pool.map(lambda job: (job[0], client_writes(stack, *job)), jobs))
    finally:
        stack.control("POST", "/_sandbox/config", {"openlines_duplicate_delivery": False}, expect=200)
    assert all(w["deliveries"] == [200, 200, 200, 200] for _, w in written)  # join + message, each twice
    hits = stack.front.hits(BOT_PATH)[before:]
    assert Counter(h.host for h in hits) == {0: DIALOGS * 4, 1: DIALOGS * 4}
    assert {h.status for h in hits} == {200}
    pending = select(stack, tmp_path, bot_inbox, bot_inbox.c.status == "pending")
    assert len(pending) == DIALOGS * 2, "each event is in the inbox once, however many copies arrived"

    # The cron's event run on both hosts at once, twice each, until nothing is left.
    reports = at_once([lambda host=host: cron(host, stack, "process-events") for host in (a, b, a, b)])
    for _ in range(10):
        if all(r["left"] == 0 for r in reports):
            break
        reports = at_once([lambda host=host: cron(host, stack, "process-events") for host in (a, b)])
    assert all(r["left"] == 0 for r in reports), reports

    rows = select(stack, tmp_path, bot_inbox)
    assert len(rows) == DIALOGS * 2
    assert Counter(r["status"] for r in rows) == {"done": DIALOGS * 2}
    assert {r["attempts"] for r in rows} == {1}, "a row was claimed by two runs"
    stored = select(stack, tmp_path, dialogs)
    chats_by_portal = {name: sorted(w["chat_id"] for n, w in written if n == name) for name in PORTALS}
    member_of = {r["id"]: r["member_id"] for r in select(stack, tmp_path, portals)}
    assert len(stored) == DIALOGS
    assert Counter(d["status"] for d in stored) == {"transferred": DIALOGS}
    for name in PORTALS:
        mine = sorted(d["chat_id"] for d in stored if member_of[d["portal_id"]] == installed[name]["member_id"])
        assert mine == chats_by_portal[name]
        once = dict.fromkeys(chats_by_portal[name], 1)
        assert handoff_calls(stack, name) == once, f"{name}: a dialog was handed to an operator twice"
        assert handoffs(stack, name) == once
    done = select(stack, tmp_path, bot_handoffs)
    assert len(done) == DIALOGS and {r["state"] for r in done} == {"done"}


# ---- conferences --------------------------------------------------------------------------------------------

EMPLOYEES = (2, 3, 4)
PAIRED = 12  # creates sent to both hosts at once with the same Idempotency-Key
SINGLE = 12  # creates without a key, alternately to host A and host B


def open_app(stack, host: str, info: dict, user_id: int) -> str:
    """An employee opens the app in the portal's frame on `host`: the bearer token of the verified page."""
    tokens = mint(stack, provider="bitrix24", portal=info["name"], user_id=user_id)[0]
    page = frame_post(SimpleNamespace(app_url=host), tokens, application_token=info["application_token"])
    assert page.status_code == 200, page.text
    return boot_data(page.text)["token"]


def create(host: str, bearer: str, name: str, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}", **({"Idempotency-Key": key} if key else {})}
    return requests.post(f"{host}/api/conferences", json={"name": name}, headers=headers, timeout=60)


def test_conferences_created_through_both_hosts_are_neither_lost_nor_duplicated(two_hosts, installed, tmp_path):
    stack = two_hosts
    a, b = stack.hosts
    names = PORTALS[:2]
    for name in names:
        done = stack.connect_yandex(installed[name]["member_id"], login=f"org-{name}@corp.example")
        assert done.returncode == 0, done.stderr
    stack.control("POST", "/_sandbox/config", {"telemost_rate_burst": 1000}, expect=200)
    before = {c["id"] for c in stack.control("GET", "/_sandbox/telemost/conferences", expect=200)}
    # Sessions from frame opens on both hosts: a token issued by one host works on the other.
    bearers = [
        open_app(stack, (a, b)[n % 2], installed[name], user)
        for n, (name, user) in enumerate((name, user) for name in names for user in EMPLOYEES)
    ]
    run = uuid.uuid4().hex[:6]
    calls, expected = [], set()
    for n in range(PAIRED):
        bearer, key, title = bearers[n % len(bearers)], secrets.token_hex(8), f"paired {run} {n}"
        calls += [
            lambda b_=bearer, k=key, t=title: create(a, b_, t, k),
            lambda b_=bearer, k=key, t=title: create(b, b_, t, k),
        ]
        expected.add(title)
    for n in range(SINGLE):
        bearer, title = bearers[(n + 1) % len(bearers)], f"single {run} {n}"
        calls.append(lambda b_=bearer, t=title, h=(a, b)[n % 2]: create(h, b_, t))
        expected.add(title)

    answers = at_once(calls)

    assert [r.status_code for r in answers] == [201] * len(answers), [r.text for r in answers if r.status_code != 201]
    paired = [(answers[2 * n].json(), answers[2 * n + 1]) for n in range(PAIRED)]
    for first, second in paired:
        assert second.json()["id"] == first["id"], "one Idempotency-Key, one conference"
    replayed = [
        [r.headers.get("Idempotent-Replayed") for r in answers[2 * n : 2 * n + 2]].count("true") for n in range(PAIRED)
    ]
    assert replayed == [1] * PAIRED, "exactly one of each pair made the meeting"
    rows = select(stack, tmp_path, conferences, conferences.c.name.like(f"% {run} %"))
    assert sorted(r["name"] for r in rows) == sorted(expected), "one row per distinct create"
    assert {r["status"] for r in rows} == {"scheduled"}
    meetings = [c for c in stack.control("GET", "/_sandbox/telemost/conferences", expect=200) if c["id"] not in before]
    assert sorted(m["id"] for m in meetings) == sorted(r["telemost_id"] for r in rows), "Telemost has exactly those"
    assert not any(m["deleted"] for m in meetings)
