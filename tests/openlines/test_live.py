"""The bot end to end over real HTTP: the sandbox portal simulates Open Lines (issue 9 §9) and posts its
events to the app under gunicorn (2 workers, each with its inbox thread)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from database import bot_handoffs, bot_inbox, dialog_messages, dialogs, portals
from scripts.stack import Stack
from tests.integration.helpers import app_db


def select(stack, table, *where) -> list[dict]:
    db = app_db(stack)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where))]
    finally:
        db.dispose()


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def install_and_attach(stack, name: str = "portal1", line_id: int = 1) -> dict:
    """Install (event), then attach the app's bot to the line through the admin API."""
    assert stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)["status"] == 200
    member_id = stack.control("GET", f"/_sandbox/portals/{name}", expect=200)["member_id"]
    answer = requests.post(
        f"{stack.app_url}/api/admin/bot/attach",
        params={"portal": member_id},
        json={"line_id": str(line_id)},
        headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return {"name": name, "member_id": member_id}


def write(stack, name: str, text: str, client_id: str = "42", chat_id=None, line_id: int = 1) -> dict:
    return stack.control(
        "POST",
        f"/_sandbox/portals/{name}/openlines/message",
        {
            "line_id": line_id,
            "client": {"id": client_id, "name": f"Клиент {client_id}"},
            "text": text,
            "connector": "livechat",
            "chat_id": chat_id,
        },
        expect=200,
    )


def handoffs_on(stack, name: str) -> list[dict]:
    state = stack.control("GET", f"/_sandbox/portals/{name}/state", expect=200)
    return [a for a in state["openlines"] if a["action"] in ("operator", "transfer")]


def api(stack, path: str, member_id: str, **params):
    response = requests.get(
        f"{stack.app_url}{path}",
        params={"portal": member_id, **params},
        headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def stack(tmp_path):
    """Sandbox with three portals and the app; retries are due at once (no backoff) for the outage test."""
    running = Stack(
        database_path=str(tmp_path / "live.db"), portals=3, log_dir=tmp_path, extra_app_env={"BOT_BACKOFF_SECONDS": "0"}
    )
    yield running
    running.stop()


def test_set_up_registers_the_bot_and_binds_session_finish(stack):
    portal = install_and_attach(stack)
    [row] = select(stack, portals)
    state = stack.control("GET", "/_sandbox/portals/portal1/state", expect=200)
    [bot] = state["bots"]
    assert row["bot_id"] == bot["id"]
    assert any(
        e["event"].upper() == "ONSESSIONFINISH" and e["handler"].endswith("/python_bot/") for e in state["events"]
    )
    line = state["lines"][0]
    assert (line["WELCOME_BOT_ENABLE"], line["WELCOME_BOT_ID"], line["WELCOME_BOT_JOIN"], line["WELCOME_BOT_LEFT"]) == (
        "Y",
        str(bot["id"]),
        "first",
        "queue",
    )
    lines = api(stack, "/api/admin/lines", portal["member_id"])["items"]
    assert [(x["line_id"], x["bot_attached"]) for x in lines] == [("1", True), ("2", False)]


def test_dialog_is_stored_handed_over_and_its_whole_conversation_kept(stack):
    portal = install_and_attach(stack)
    first = write(stack, "portal1", "Здравствуйте, где мой заказ?")
    assert first["deliveries"] == [200, 200]
    chat_id = first["chat_id"]
    wait_for(lambda: handoffs_on(stack, "portal1"))
    [handoff] = handoffs_on(stack, "portal1")
    assert (handoff["action"], int(handoff["chat_id"])) == ("operator", chat_id)
    [dialog] = wait_for(
        lambda: [d for d in select(stack, dialogs) if d["status"] == "transferred" and d["first_message"]]
    )
    assert (dialog["chat_id"], dialog["line_id"], dialog["connector"], dialog["client_name"]) == (
        chat_id,
        "1",
        "livechat",
        "Клиент 42",
    )
    assert dialog["first_message"] == "Здравствуйте, где мой заказ?"
    assert dialog["crm_bindings"] and "LEAD" in dialog["crm_bindings"]
    # The operator answers and closes; OnSessionFinish brings the whole conversation.
    stack.control(
        "POST",
        "/_sandbox/portals/portal1/openlines/operator-reply",
        {"chat_id": chat_id, "text": "Заказ отправлен сегодня."},
        expect=200,
    )
    finished = stack.control("POST", "/_sandbox/portals/portal1/openlines/finish", {"chat_id": chat_id}, expect=200)
    assert finished["deliveries"] == [200]
    wait_for(lambda: select(stack, dialogs)[0]["history_fetched_at"])
    body = api(stack, f"/api/dialogs/{chat_id}", portal["member_id"])
    kinds = [(m["author"], m["text"]) for m in body["messages"]]
    assert ("client", "Здравствуйте, где мой заказ?") in kinds
    assert ("operator", "Заказ отправлен сегодня.") in kinds
    assert any(kind == "system" for kind, _ in kinds)
    assert len(kinds) == len({m["id"] for m in body["messages"]})  # each message once
    assert body["status"] == "finished" and body["handoff"]["outcome"] == "transferred"


def test_duplicate_delivery_gives_one_dialog_and_one_transfer(stack):
    install_and_attach(stack)
    stack.control("POST", "/_sandbox/config", {"openlines_duplicate_delivery": True}, expect=200)
    answer = write(stack, "portal1", "Привет")
    assert answer["deliveries"] == [200, 200, 200, 200]
    wait_for(lambda: handoffs_on(stack, "portal1"))
    time.sleep(1.0)  # let a wrong second transfer show up, if there were one
    assert len(handoffs_on(stack, "portal1")) == 1
    assert len(select(stack, dialogs)) == 1
    assert len(select(stack, bot_inbox)) == 2  # join + message; the copies were acknowledged and dropped


@pytest.mark.parametrize("mode", ["503", "timeout"])
def test_portal_rest_down_while_events_arrive_then_the_task_run_catches_up(stack, mode):
    portal = install_and_attach(stack)
    fault = {
        "server": "portal",
        "mode": mode,
        "value": 2 if mode == "timeout" else None,
        "count": None,
        "portal": "portal1",
    }
    stack.control("POST", "/_sandbox/faults", fault, expect=201)
    chats = [write(stack, "portal1", f"вопрос {n}", client_id=str(n)) for n in range(3)]
    assert all(c["deliveries"] == [200, 200] for c in chats)
    wait_for(lambda: all(r["attempts"] >= 1 and r["lease_owner"] is None for r in select(stack, bot_inbox)), 60)
    assert handoffs_on(stack, "portal1") == []
    stack.control("DELETE", "/_sandbox/faults", expect=200)
    # The cron run: rows a worker still holds (mid-retry) are left to it, so run until nothing is left.
    for _ in range(20):
        run = requests.post(
            f"{stack.app_url}/tasks/process-events", headers={"X-Cron-Token": stack.env["CRON_TOKEN"]}, timeout=120
        )
        assert run.status_code == 200, run.text
        if run.json()["left"] == 0:
            break
        time.sleep(1)
    assert run.json()["left"] == 0
    assert sorted(int(a["chat_id"]) for a in handoffs_on(stack, "portal1")) == sorted(c["chat_id"] for c in chats)
    assert {d["status"] for d in select(stack, dialogs)} == {"transferred"}
    assert api(stack, "/api/dialogs", portal["member_id"])["total"] == 3


def test_hundred_dialogs_from_three_portals_at_once(stack):
    names = ["portal1", "portal2", "portal3"]
    members = {name: install_and_attach(stack, name)["member_id"] for name in names}
    jobs = [(names[n % 3], str(1000 + n)) for n in range(100)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: (job[0], write(stack, job[0], f"q {job[1]}", client_id=job[1])), jobs))
    assert all(a["deliveries"] == [200, 200] for _, a in answers)
    wait_for(lambda: len([h for h in select(stack, bot_handoffs) if h["state"] == "done"]) == 100, 90)
    for name in names:
        mine = sorted(a["chat_id"] for n, a in answers if n == name)
        assert sorted(int(h["chat_id"]) for h in handoffs_on(stack, name)) == mine  # each once, on its portal
        page = api(stack, "/api/dialogs", members[name], per_page=100)
        assert sorted(d["chat_id"] for d in page["items"]) == mine and page["total"] == len(mine)
    assert len(select(stack, dialogs)) == 100
    assert len(select(stack, dialog_messages)) == 100
