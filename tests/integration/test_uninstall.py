"""Finding 1: ONAPPUNINSTALL is honoured only on proof from Bitrix24, never on the application token alone.

Every employee can read the application token in the iframe POST, so these tests forge the event with it.
"""

import json
import time

import pytest
import requests

from database import audit_log, credentials
from tests.factories import make_portal
from tests.integration.helpers import (
    credential_rows,
    event_form,
    portal_info,
    portal_rows,
    run_tasks,
    table_rows,
    update_rows,
)


@pytest.fixture
def installed(live_stack):
    result = live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result["body"]
    return portal_info(live_stack)


def forge_uninstall(stack, info, clean: bool) -> requests.Response:
    form = event_form(stack, "event-ONAPPUNINSTALL.json", info, **{"data[CLEAN]": "1" if clean else "0"})
    return requests.post(f"{stack.app_url}/events", data=form, timeout=60)


def audit_actions(stack, member_id: str) -> list[str]:
    return [row["action"] for row in table_rows(stack, audit_log, audit_log.c.target == member_id)]


@pytest.mark.parametrize("clean", [True, False])
def test_forged_uninstall_with_an_expired_stored_token_is_refused(live_stack, installed, clean):
    """The idle portal's token has expired: the app refreshes it, Bitrix24 says installed, the event is forged."""
    [portal_cred] = credential_rows(live_stack)
    update_rows(live_stack, credentials, credentials.c.id == portal_cred["id"], expires_at=int(time.time()) - 60)
    portals_before = portal_rows(live_stack)

    response = forge_uninstall(live_stack, installed, clean)

    assert response.status_code == 403 and response.json()["error"] == "still_installed"
    assert portal_rows(live_stack) == portals_before
    [after] = credential_rows(live_stack)
    # Refreshed through the keeper (a new version), still active: nothing was revoked or deleted.
    assert (after["id"], after["status"], after["version"]) == (portal_cred["id"], "active", portal_cred["version"] + 1)
    assert audit_actions(live_stack, installed["member_id"])[-1] == "uninstall_refused"


def test_forged_uninstall_during_an_oauth_503_is_pending_then_refused_by_the_next_run(live_stack, installed):
    """One 503 from the OAuth server proves nothing: nothing is deleted, the task run asks again."""
    creds_before = credential_rows(live_stack)
    live_stack.control("POST", "/_sandbox/faults", {"server": "oauth", "mode": "503", "count": 1}, expect=201)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 202 and response.json()["status"] == "pending"
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_clean"]) == ("installed", True)
    assert row["uninstall_pending_at"] is not None
    assert credential_rows(live_stack) == creds_before

    run = run_tasks(live_stack)

    assert run.status_code == 200
    assert run.json()["uninstalls"] == {"checked": 1, "uninstalled": 0, "refused": 1, "pending": 0}
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_at"], row["uninstall_pending_clean"]) == ("installed", None, False)
    assert credential_rows(live_stack) == creds_before
    assert audit_actions(live_stack, installed["member_id"])[-2:] == ["uninstall_pending", "uninstall_refused"]


@pytest.mark.parametrize("clean", [True, False])
def test_genuine_uninstall_with_an_expired_stored_token_is_honoured(live_stack, installed, clean):
    """Bitrix24 revoked our tokens before sending the event: the refresh answers NOT_INSTALLED, which is proof."""
    [portal_cred] = credential_rows(live_stack)
    update_rows(live_stack, credentials, credentials.c.id == portal_cred["id"], expires_at=int(time.time()) - 60)

    result = live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": clean}, expect=200)

    assert result["status"] == 200, result
    [row] = portal_rows(live_stack)
    assert row["status"] == "uninstalled"
    assert [c["status"] for c in credential_rows(live_stack)] == ([] if clean else ["revoked"])
    assert audit_actions(live_stack, installed["member_id"])[-1] == "portal_uninstalled"


def test_genuine_uninstall_during_an_oauth_503_is_finished_by_the_next_run(live_stack, installed):
    live_stack.control("POST", "/_sandbox/faults", {"server": "oauth", "mode": "503", "count": 1}, expect=201)

    result = live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": True}, expect=200)

    assert result["status"] == 202, result
    assert portal_rows(live_stack)[0]["status"] == "installed"
    assert len(credential_rows(live_stack)) == 1

    run = run_tasks(live_stack)

    assert run.status_code == 200
    assert run.json()["uninstalls"] == {"checked": 1, "uninstalled": 1, "refused": 0, "pending": 0}
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_at"]) == ("uninstalled", None)
    assert credential_rows(live_stack) == []


def test_repeated_uninstall_event_of_an_uninstalled_portal_changes_nothing(live_stack, installed):
    live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": False}, expect=200)
    portals_before, creds_before = portal_rows(live_stack), credential_rows(live_stack)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 200 and response.json()["status"] == "already"
    assert portal_rows(live_stack) == portals_before
    assert credential_rows(live_stack) == creds_before


def test_cli_refresh_rechecks_pending_uninstalls(runner, services):
    """`flask tokens refresh` runs the same re-check as /tasks/refresh; no credential to ask with → refused."""
    portal = make_portal(services, uninstall_pending_at=int(time.time()) - 600, uninstall_pending_clean=True)

    result = runner.invoke(args=["tokens", "refresh"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["uninstalls"] == {"checked": 1, "uninstalled": 0, "refused": 1, "pending": 0}
    after = services.portals.get(portal.id)
    assert (after.status, after.uninstall_pending_at, after.uninstall_pending_clean) == ("installed", None, False)
    [entry] = services.audit.entries(target=portal.member_id)
    assert (entry["action"], entry["actor"], entry["detail"]) == (
        "uninstall_refused",
        "task",
        {"clean": True, "verdict": "unverifiable"},
    )
