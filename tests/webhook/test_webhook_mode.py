"""Single-portal webhook mode over real HTTP: the sandbox's incoming webhook, a gunicorn app, the install,
an iframe open and a conference whose portal calls go through the webhook."""

from __future__ import annotations

import requests

from database import conferences, credentials
from tests.integration.helpers import (
    boot_data,
    frame_post,
    mint,
    portal_info,
    portal_rows,
    table_rows,
    update_rows,
)
from tests.webhook.conftest import webhook_code


def portal_calls(stack, name: str = "portal1") -> list[dict]:
    """Every REST call the sandbox portal received, batch sub-calls included."""
    return stack.control("GET", f"/_sandbox/portals/{name}/calls", expect=200)


def install(stack, name: str = "portal1") -> dict:
    """The sandbox installs the app on a portal (ONAPPINSTALL to the app) and answers what the app said."""
    return stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)


def test_sandbox_webhook_acts_as_its_user_and_refuses_a_wrong_code(webhook_stack):
    url = webhook_stack.webhook_url
    assert url.startswith(f"http://{portal_info(webhook_stack)['domain']}/rest/1/")
    answer = requests.post(f"{url}user.current", json={}, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["result"]["ID"] == "1"
    wrong = requests.post(url.replace(webhook_code(url), "0" * 16) + "user.current", json={}, timeout=30)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "NO_AUTH_FOUND"
    refused = requests.post(f"{url}event.get", json={}, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"] == "WRONG_AUTH_TYPE"
    recorded = [(c["method"], c["auth"], c["user_id"], c["status"]) for c in portal_calls(webhook_stack)]
    assert recorded == [
        ("user.current", "webhook", 1, 200),
        ("user.current", "webhook", None, 401),
        ("event.get", "webhook", 1, 403),
    ]


def test_install_open_and_conference_through_the_webhook(webhook_stack):
    stack = webhook_stack
    result = install(stack)
    assert result["status"] == 200, result["body"]
    [row] = portal_rows(stack)
    assert (row["domain"], row["status"]) == (portal_info(stack)["domain"], "installed")
    assert row["bot_id"]
    # Events and the bot need the app's own context: the install's set-up used the app's OAuth token.
    setup = [(c["method"], c["auth"]) for c in portal_calls(stack) if c["method"] in ("imbot.register", "event.bind")]
    assert setup and {auth for _, auth in setup} == {"oauth"}

    # An employee opens the app: verified against portal1 with their own token, as always.
    application_token = portal_info(stack)["application_token"]
    opened = frame_post(stack, mint(stack, user_id=2), application_token=application_token)
    assert opened.status_code == 200
    token = boot_data(opened.text)["token"]
    connected = stack.connect_yandex(row["member_id"])
    assert connected.returncode == 0, connected.stderr

    # Every Bitrix24 access token the app holds is past its expiry: the webhook needs none of them.
    assert update_rows(stack, credentials, credentials.c.provider == "bitrix24", expires_at=0) == 2
    stack.control("DELETE", "/_sandbox/oauth/refreshes", expect=200)
    stack.control("DELETE", "/_sandbox/portals/portal1/calls", expect=200)
    created = requests.post(
        f"{stack.app_url}/api/conferences",
        json={
            "name": "Планёрка",
            "start_date": "2030-03-20",
            "start_time": "10:00",
            "timezone": "Europe/Moscow",
            "create_calendar_event": True,
            "invite_users": True,
            "invitees": [3],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    [conference] = table_rows(stack, conferences)
    assert conference["status"] == "scheduled"
    assert conference["failed_step"] is None
    assert stack.control("GET", "/_sandbox/oauth/refreshes", expect=200)["bitrix24"]["total"] == 0
    calls = portal_calls(stack)
    assert {c["method"] for c in calls} >= {"calendar.event.add", "im.notify.system.add"}
    # Every portal call of the create went through the webhook, acting as its user (1), not a token.
    assert {(c["auth"], c["user_id"]) for c in calls} == {("webhook", 1)}
    state = stack.control("GET", "/_sandbox/portals/portal1/state", expect=200)
    [event] = [e for e in state["calendar_events"] if int(e["ID"]) == conference["calendar_event_id"]]
    # In the employee's calendar; organised by the webhook's user (Bitrix24: the caller organises).
    assert (event["OWNER_ID"], event["MEETING_HOST"]) == ("2", "1")
    # urllib3 logged each webhook request line (DEBUG): the code was redacted from every one.
    log = (stack.log_dir / "app.log").read_text(encoding="utf-8")
    assert "/rest/1/[REDACTED]/batch" in log
    assert webhook_code(stack.webhook_url) not in log


def test_other_portal_cannot_install_or_open(webhook_stack):
    stack = webhook_stack
    result = install(stack, "portal2")
    assert result["status"] == 400
    assert portal_rows(stack) == []
    other = portal_info(stack, "portal2")
    opened = frame_post(stack, mint(stack, portal="portal2", user_id=1), application_token=other["application_token"])
    assert opened.status_code == 401
    log = (stack.log_dir / "app.log").read_text(encoding="utf-8")
    assert "iframe open refused: invalid_host" in log
