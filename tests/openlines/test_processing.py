"""Processing the inbox: leases between workers, outages and the task run, many portals at once, working
hours, the whole conversation after the operator finishes. Storage runs on SQLite and PostgreSQL."""

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app import create_app
from tests.openlines.helpers import (
    bot_handoffs,
    bot_inbox,
    count,
    dialog_messages,
    dialogs,
    lines_event,
    make_portal,
    patch_rest,
    rows,
)

ALL_WEEK_CLOSED = {day: [] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
ALL_WEEK_OPEN = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@pytest.fixture
def services(bot_app_any_db):
    return bot_app_any_db.extensions["services"]


@pytest.fixture
def client(bot_app_any_db):
    return bot_app_any_db.test_client()


def test_two_workers_on_the_same_inbox_hand_over_once(services, client, rest, storage_config):
    # A second app on the same database plays another gunicorn worker (own engine, own locks).
    peer_app = create_app(storage_config)
    peer = peer_app.extensions["services"]
    patch_rest(peer, rest)
    rest.delay = 0.05
    portal = make_portal(services)
    for chat in range(1, 6):
        client.post("/python_bot/", data=lines_event(portal, "ONIMBOTJOINCHAT", chat_id=chat))
        client.post("/python_bot/", data=lines_event(portal, chat_id=chat))
    barrier = threading.Barrier(2)

    def work(svc):
        barrier.wait()
        return svc.openlines.process_ready(trigger="test", budget_s=30)

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(work, [services, peer]))
    peer_app.extensions["db"].dispose()
    assert sum(r.claimed for r in reports) == 10  # every row claimed by exactly one worker
    calls = rest.of(portal["member_id"], "imopenlines.bot.session.operator")
    assert sorted(c["CHAT_ID"] for c in calls) == [1, 2, 3, 4, 5]
    assert count(services, dialogs) == 5
    assert {r["status"] for r in rows(services, bot_inbox)} == {"done"}


def test_a_second_claim_of_a_leased_row_wins_nothing(services, client):
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal))
    first = services.openlines._claim("worker-a", 10)
    second = services.openlines._claim("worker-b", 10)
    assert (len(first), len(second)) == (1, 0)


def test_hand_off_lost_after_the_call_is_not_repeated(services, client, rest):
    """A worker dies after the portal took the hand-off: the retry sees WRONG_CHAT and records it."""
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal))
    rest.with_operator.add((portal["member_id"], 1775))  # the dead worker's call went through
    with services.db.write() as conn:  # …and its leases ran out
        conn.execute(sa.update(bot_inbox).values(lease_owner="dead", lease_until=time.time() - 1))
    services.openlines.process_ready(trigger="test", budget_s=30)
    [handoff] = rows(services, bot_handoffs)
    assert (handoff["state"], handoff["outcome"]) == ("done", "already_with_operator")


@pytest.mark.parametrize("fault", ["503", "timeout"])
def test_portal_down_while_events_arrive_then_the_task_run_catches_up(services, client, rest, fault, bot_app_any_db):
    portals = [make_portal(services, f"p{i}") for i in range(2)]
    rest.down = fault
    for portal in portals:
        for chat in (10, 11):
            response = client.post("/python_bot/", data=lines_event(portal, chat_id=chat))
            assert response.status_code == 200
    report = services.openlines.process_ready(trigger="worker", budget_s=30)
    assert (report.retried, report.done) == (4, 0)
    assert {(r["status"], r["last_error"]) for r in rows(services, bot_inbox)} == {
        ("pending", "http_503" if fault == "503" else "network_error")
    }
    rest.down = None
    cron = bot_app_any_db.config["CRON_TOKEN"]
    assert bot_app_any_db.test_client().post("/tasks/process-events").status_code == 401
    answer = bot_app_any_db.test_client().post("/tasks/process-events", headers={"X-Cron-Token": cron})
    assert answer.status_code == 200
    assert (answer.get_json()["done"], answer.get_json()["left"]) == (4, 0)
    for portal in portals:
        assert sorted(c["CHAT_ID"] for c in rest.of(portal["member_id"], "imopenlines.bot.session.operator")) == [
            10,
            11,
        ]
    assert count(services, dialogs) == 4


def test_retries_back_off_and_give_up(tmp_path, rest):
    from tests.openlines.helpers import bot_config

    application = create_app(bot_config(tmp_path, BOT_BACKOFF_SECONDS=60.0, BOT_MAX_ATTEMPTS=2))
    services = application.extensions["services"]
    patch_rest(services, rest)
    portal = make_portal(services)
    application.test_client().post("/python_bot/", data=lines_event(portal))
    rest.down = "503"
    services.openlines.process_ready(trigger="test", budget_s=30)
    [row] = rows(services, bot_inbox)
    assert row["status"] == "pending" and row["next_attempt_at"] > time.time() + 40
    assert services.openlines.process_ready(trigger="test", budget_s=30).claimed == 0  # not due yet
    with services.db.write() as conn:
        conn.execute(sa.update(bot_inbox).values(next_attempt_at=0))
    services.openlines.process_ready(trigger="test", budget_s=30)
    [row] = rows(services, bot_inbox)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    application.extensions["db"].dispose()


def test_process_events_cli(bot_app_any_db, services, client, rest):
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal))
    result = bot_app_any_db.test_cli_runner().invoke(args=["bot", "process-events"])
    assert result.exit_code == 0, result.output
    assert '"done": 1' in result.output
    assert len(rest.of(portal["member_id"], "imopenlines.bot.session.operator")) == 1


def test_hundred_dialogs_from_three_portals_at_once(services, bot_app_any_db, rest):
    portals = [make_portal(services, f"p{i}") for i in range(3)]
    jobs = [(portals[n % 3], 1000 + n) for n in range(100)]

    def deliver(job):
        portal, chat = job
        c = bot_app_any_db.test_client()
        name = f"{portal['name']} client"
        statuses = [
            c.post(
                "/python_bot/", data=lines_event(portal, "ONIMBOTJOINCHAT", chat_id=chat, client_name=name)
            ).status_code,
            c.post(
                "/python_bot/", data=lines_event(portal, chat_id=chat, text=f"question {chat}", client_name=name)
            ).status_code,
        ]
        return statuses

    with ThreadPoolExecutor(8) as pool:
        assert all(s == [200, 200] for s in pool.map(deliver, jobs))
    peer_app = create_app(dict(bot_app_any_db.config))
    patch_rest(peer_app.extensions["services"], rest)
    workers = [services, peer_app.extensions["services"]]
    for worker in workers:  # small batches, so that both workers get a share of the inbox
        worker.openlines.config = dataclasses.replace(worker.openlines.config, batch_size=10)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda s: s.openlines.process_ready(trigger="test", budget_s=60), workers))
    assert sum(r.claimed for r in reports) == 200
    peer_app.extensions["db"].dispose()
    assert count(services, dialogs) == 100
    assert count(services, dialog_messages) == 100
    for index, portal in enumerate(portals):
        mine = sorted(chat for p, chat in jobs if p is portal)
        calls = rest.of(portal["member_id"], "imopenlines.bot.session.operator")
        assert sorted(c["CHAT_ID"] for c in calls) == mine  # each once, on its own portal
        page = (
            bot_app_any_db.test_client()
            .get("/api/dialogs?per_page=100", headers={"X-API-Token": portal["api_token"]})
            .get_json()
        )
        assert page["total"] == len(mine)
        assert {d["client"]["name"] for d in page["items"]} == {f"p{index} client"}


def test_working_hours_in(services, client, rest):
    portal = make_portal(services)
    services.openlines.update_settings(portal["id"], {"greeting": "Hi!", "lines": {"1": {"schedule": ALL_WEEK_OPEN}}})
    client.post("/python_bot/", data=lines_event(portal))
    services.openlines.process_ready(trigger="test", budget_s=30)
    assert [p["MESSAGE"] for p in rest.of(portal["member_id"], "imbot.message.add")] == ["Hi!"]
    assert len(rest.of(portal["member_id"], "imopenlines.bot.session.operator")) == 1
    [dialog] = rows(services, dialogs)
    assert dialog["out_of_hours"] is False or dialog["out_of_hours"] == 0


@pytest.mark.parametrize(("language", "start"), [("ru", "Спасибо за обращение"), ("en", "Thank you")])
def test_working_hours_out_sends_the_default_message_and_queues(services, client, rest, language, start):
    portal = make_portal(services)
    services.openlines.update_settings(portal["id"], {"greeting": "Hi!", "lines": {"1": {"schedule": ALL_WEEK_CLOSED}}})
    client.post("/python_bot/", data=lines_event(portal, language=language))
    services.openlines.process_ready(trigger="test", budget_s=30)
    [notice] = rest.of(portal["member_id"], "imbot.message.add")
    assert notice["MESSAGE"].startswith(start)
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == [{"CHAT_ID": 1775}]
    [dialog] = rows(services, dialogs)
    assert bool(dialog["out_of_hours"]) is True and dialog["status"] == "transferred"


def test_working_hours_out_with_finish_and_own_text(services, client, rest):
    portal = make_portal(services)
    services.openlines.update_settings(
        portal["id"],
        {
            "lines": {
                "1": {
                    "schedule": ALL_WEEK_CLOSED,
                    "out_of_hours_text": "Мы работаем с 9 до 18.",
                    "out_of_hours_action": "finish",
                }
            }
        },
    )
    client.post("/python_bot/", data=lines_event(portal))
    services.openlines.process_ready(trigger="test", budget_s=30)
    assert [p["MESSAGE"] for p in rest.of(portal["member_id"], "imbot.message.add")] == ["Мы работаем с 9 до 18."]
    assert rest.of(portal["member_id"], "imopenlines.bot.session.finish") == [{"CHAT_ID": 1775}]
    assert rest.of(portal["member_id"], "imopenlines.bot.session.operator") == []
    assert rows(services, dialogs)[0]["status"] == "finished"


def test_no_out_of_hours_message_once_an_operator_has_the_dialog(services, client, rest):
    portal = make_portal(services)
    services.openlines.update_settings(portal["id"], {"lines": {"1": {"schedule": ALL_WEEK_CLOSED}}})
    client.post("/python_bot/", data=lines_event(portal, message_id=1))
    services.openlines.process_ready(trigger="test", budget_s=30)
    client.post("/python_bot/", data=lines_event(portal, message_id=2, text="anyone?"))
    services.openlines.process_ready(trigger="test", budget_s=30)
    assert len(rest.of(portal["member_id"], "imbot.message.add")) == 1
    assert len(rest.of(portal["member_id"], "imopenlines.bot.session.operator")) == 1
    assert count(services, dialog_messages) == 2


def test_schedule_follows_the_portal_time_zone():
    from models.openlines.hours import is_open, timezone

    schedule = '{"mon": [["09:00", "18:00"]]}'
    monday_0700_utc = 1767596400  # 2026-01-05 07:00 UTC = 10:00 in Moscow, 07:00 in London
    assert is_open(schedule, timezone("Europe/Moscow", "UTC"), monday_0700_utc) is True
    assert is_open(schedule, timezone("Europe/London", "UTC"), monday_0700_utc) is False
    assert is_open(schedule, timezone("Europe/Moscow", "UTC"), monday_0700_utc + 86400) is False  # tuesday
    assert is_open(None, timezone(None, "UTC"), monday_0700_utc) is True


HISTORY = {
    "chatId": 1775,
    "sessionId": 469,
    "message": {
        "19001": {
            "id": "19001",
            "chatid": "1775",
            "senderid": "599",
            "date": "2026-01-05T10:00:00+03:00",
            "text": "Where is my order?",
        },
        "19002": {
            "id": "19002",
            "chatid": "1775",
            "senderid": "39",
            "date": "2026-01-05T10:00:01+03:00",
            "text": "Connecting you",
        },
        "19003": {
            "id": "19003",
            "chatid": "1775",
            "senderid": "7",
            "date": "2026-01-05T10:01:00+03:00",
            "text": "It ships today.",
        },
        "19004": {
            "id": "19004",
            "chatid": "1775",
            "senderid": "0",
            "date": "2026-01-05T10:05:00+03:00",
            "text": "Dialog closed.",
        },
    },
}


def finish_event(portal, chat_id=1775, session_id="469"):
    """OnSessionFinish as the sandbox posts it (data[connector][chat_id] is the channel's own chat)."""
    return {
        "event": "ONSESSIONFINISH",
        "ts": str(int(time.time())),
        "data[chat][id]": str(chat_id),
        "data[connector][chat_id]": "88888",
        "data[connector][line_id]": "1",
        "data[session][id]": session_id,
        "data[session][closed]": "Y",
        "data[user][id]": "7",
        "auth[member_id]": portal["member_id"],
        "auth[application_token]": portal["app_token"],
    }


def test_full_conversation_stored_once_after_the_operator_finishes(services, client, rest):
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal, message_id=19001, text="Where is my order?"))
    services.openlines.process_ready(trigger="test", budget_s=30)
    rest.history[(portal["member_id"], 1775)] = HISTORY
    form = finish_event(portal)
    assert client.post("/events", data=form).status_code == 200
    assert client.post("/events", data=form).get_json()["status"] == "duplicate"
    services.openlines.process_ready(trigger="test", budget_s=30)
    assert rest.of(portal["member_id"], "imopenlines.session.history.get") == [{"CHAT_ID": 1775, "SESSION_ID": "469"}]
    messages = sorted(rows(services, dialog_messages), key=lambda m: m["message_id"])
    assert [(m["message_id"], m["author_kind"]) for m in messages] == [
        ("19001", "client"),
        ("19002", "bot"),
        ("19003", "operator"),
        ("19004", "system"),
    ]
    [dialog] = rows(services, dialogs)
    assert (dialog["status"], dialog["session_id"]) == ("finished", "469") and dialog["history_fetched_at"]
    # The same history fetched again (the task run, a second finish) adds nothing.
    services.openlines.fetch_history(services.portals.get(portal["id"]), 1775, "469")
    assert count(services, dialog_messages) == 4


def test_task_run_finds_finished_sessions_without_the_event(services, client, rest, bot_app_any_db):
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal, message_id=19001, text="Where is my order?"))
    services.openlines.process_ready(trigger="test", budget_s=30)
    with services.db.write() as conn:
        conn.execute(sa.update(dialogs).values(transferred_at=int(time.time()) - 3600))
    rest.dialog_info[(portal["member_id"], 1775)] = {
        "id": "1775",
        "entity_type": "LINES",
        "session_id": "469",
        "session_status": "closed",
    }
    rest.history[(portal["member_id"], 1775)] = HISTORY
    result = bot_app_any_db.test_cli_runner().invoke(args=["bot", "process-events"])
    assert result.exit_code == 0 and '"history_fetched": 1' in result.output, result.output
    assert count(services, dialog_messages) == 4
    assert rows(services, dialogs)[0]["status"] == "finished"


def test_task_run_leaves_open_sessions_alone(services, client, rest):
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal))
    services.openlines.process_ready(trigger="test", budget_s=30)
    with services.db.write() as conn:
        conn.execute(sa.update(dialogs).values(transferred_at=int(time.time()) - 3600))
    rest.dialog_info[(portal["member_id"], 1775)] = {"id": "1775", "session_id": "469", "session_status": "open"}
    services.openlines.process_ready(trigger="cli", budget_s=30)
    assert rest.of(portal["member_id"], "imopenlines.session.history.get") == []
    assert rows(services, dialogs)[0]["status"] == "transferred"


def test_task_run_prunes_old_processed_rows_only(services, client):
    portal = make_portal(services)
    client.post("/python_bot/", data=lines_event(portal, chat_id=1))
    client.post("/python_bot/", data=lines_event(portal, chat_id=2))
    services.openlines.process_ready(trigger="worker", budget_s=30)
    client.post("/python_bot/", data=lines_event(portal, chat_id=3))  # still pending
    with services.db.write() as conn:
        conn.execute(
            sa.update(bot_inbox)
            .where(bot_inbox.c.status == "done", bot_inbox.c.event_key.like("%:10"))
            .values(processed_at=time.time() - 8 * 86400)
        )
    report = services.openlines.process_ready(trigger="cli", limit=1, budget_s=30)
    assert report.pruned == 1
    assert sorted(r["event_key"] for r in rows(services, bot_inbox)) == ["ONIMBOTMESSAGEADD:20", "ONIMBOTMESSAGEADD:30"]
