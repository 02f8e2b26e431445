"""Issue 7 finding 1, attacked harder: a forged ONAPPUNINSTALL (the application token every employee sees)
while the stored token has expired and the OAuth server keeps failing, or loses its answer."""

import time

import requests
from cryptography.fernet import Fernet

from database import credentials
from tests.integration.helpers import (
    credential_rows,
    event_form,
    frame_post,
    mint,
    portal_info,
    portal_rows,
    run_tasks,
    update_rows,
)


def forge_uninstall(stack, info, clean: bool) -> requests.Response:
    """What an employee can post: the documented event with the portal's application token."""
    form = event_form(stack, "event-ONAPPUNINSTALL.json", info, **{"data[CLEAN]": "1" if clean else "0"})
    return requests.post(f"{stack.app_url}/events", data=form, timeout=60)


def fault(stack, mode: str, count: int) -> None:
    stack.control("POST", "/_sandbox/faults", {"server": "oauth", "mode": mode, "count": count}, expect=201)


def expire_portal_token(stack) -> dict:
    [cred] = credential_rows(stack)
    update_rows(stack, credentials, credentials.c.id == cred["id"], expires_at=int(time.time()) - 60)
    [cred] = credential_rows(stack)
    return cred


def test_forged_clean_uninstall_with_an_expired_token_and_two_oauth_503s_deletes_nothing(live_stack, installed):
    """Two 503s on the refresh are retried; the refreshed token then shows the app installed: a forgery."""
    before = expire_portal_token(live_stack)
    fault(live_stack, "503", 2)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 403 and response.json()["error"] == "still_installed"
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_at"]) == ("installed", None)
    [after] = credential_rows(live_stack)
    assert (after["id"], after["status"], after["version"], after["failure_count"]) == (
        before["id"],
        "active",
        before["version"] + 1,
        0,
    )


def test_forged_clean_uninstall_while_every_oauth_answer_is_503_is_only_pending(live_stack, installed):
    """The refresh fails on every attempt: no proof either way, so nothing is deleted and the run asks again."""
    before = expire_portal_token(live_stack)
    fault(live_stack, "503", 20)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 202 and response.json()["status"] == "pending"
    [after] = credential_rows(live_stack)
    assert (after["status"], after["version"], after["refresh_token_enc"]) == (
        "active",
        before["version"],
        before["refresh_token_enc"],
    )
    live_stack.control("DELETE", "/_sandbox/faults", expect=200)

    run = run_tasks(live_stack)

    assert run.json()["uninstalls"] == {"checked": 1, "uninstalled": 0, "refused": 1, "pending": 0}
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_at"], row["uninstall_pending_clean"]) == ("installed", None, False)
    [after] = credential_rows(live_stack)
    assert (after["status"], after["version"]) == ("active", before["version"] + 1)


def test_forged_clean_uninstall_after_a_lost_refresh_answer_deletes_nothing(live_stack, installed):
    """The OAuth server rotates the pair and the answer is lost: the retry's invalid_grant is our own lost
    response, not proof that the app is gone."""
    expire_portal_token(live_stack)
    fault(live_stack, "drop_after_rotate", 1)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 202 and response.json()["status"] == "pending"
    run = run_tasks(live_stack)
    assert run.json()["uninstalls"] == {"checked": 1, "uninstalled": 0, "refused": 1, "pending": 0}
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_at"]) == ("installed", None)
    [after] = credential_rows(live_stack)
    assert (after["status"], after["last_error"]) == ("needs_reauth", "lost_response")


def test_a_forged_clean_flag_cannot_turn_a_pending_keep_data_uninstall_into_a_wipe(live_stack, installed):
    """The admin uninstalls keeping the data while the OAuth server answers 503 (pending, CLEAN=0); an
    employee then posts CLEAN=1. The proof now succeeds, but only the admin's choice counts: data kept."""
    fault(live_stack, "503", 1)
    genuine = live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": False}, expect=200)
    assert genuine["status"] == 202, genuine
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_clean"]) == ("installed", False)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 200 and response.json()["status"] == "uninstalled"
    [row] = portal_rows(live_stack)
    assert row["status"] == "uninstalled"
    assert [c["status"] for c in credential_rows(live_stack)] == ["revoked"]


def spend_stored_refresh_token(stack) -> None:
    """Refresh the stored pair behind the app's back (a database restored from an older backup, a copy of
    the app on the same credentials): the stored refresh token is spent, the app is still installed."""
    [cred] = credential_rows(stack)
    refresh_token = (
        Fernet(stack.env["TOKEN_ENCRYPTION_KEY"].split(",")[0]).decrypt(cred["refresh_token_enc"].encode()).decode()
    )
    answer = requests.post(
        f"{stack.sandbox['oauth']}/oauth/token/",
        timeout=30,
        data={
            "grant_type": "refresh_token",
            "client_id": stack.env["BITRIX24_CLIENT_ID"],
            "client_secret": stack.env["BITRIX24_CLIENT_SECRET"],
            "refresh_token": refresh_token,
        },
    )
    assert answer.status_code == 200, answer.text


def test_forged_clean_uninstall_when_our_refresh_token_is_dead_deletes_nothing(live_stack, installed):
    """invalid_grant says our pair is dead, not that the app is gone (Bitrix24 answers NOT_INSTALLED for
    that): no proof, so the portal and its data stay."""
    spend_stored_refresh_token(live_stack)
    expire_portal_token(live_stack)

    response = forge_uninstall(live_stack, installed, clean=True)

    assert response.status_code == 403 and response.json()["error"] == "uninstall_unverifiable"
    [row] = portal_rows(live_stack)
    assert (row["status"], row["uninstall_pending_at"]) == ("installed", None)
    [cred] = credential_rows(live_stack)
    assert cred["last_error"] == "invalid_grant"


def test_an_employees_unproven_refresh_token_proves_no_uninstall(make_stack):
    """The iframe POST proves AUTH_ID, never REFRESH_ID. An employee opens the app with a refresh token from a
    portal of their own where the app is already uninstalled; once the portal credential is out of play
    (needs re-authorisation), that pair must not be refreshed to "prove" that the victim uninstalled."""
    stack = make_stack(portals=2)
    for name in ("portal1", "portal2"):
        assert (
            stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)["status"] == 200
        )
    victim, own = portal_info(stack, "portal1"), mint(stack, portal="portal2", user_id=1)
    stack.control("POST", "/_sandbox/portals/portal2/uninstall", {"clean": True}, expect=200)
    employee = mint(stack, portal="portal1", user_id=2)
    opened = frame_post(stack, employee, application_token=victim["application_token"], REFRESH_ID=own["refresh_token"])
    assert opened.status_code == 200
    rows = {c["subject"]: c for c in credential_rows(stack) if c["account"] == victim["member_id"]}
    update_rows(stack, credentials, credentials.c.id == rows["portal"]["id"], status="needs_reauth")
    update_rows(stack, credentials, credentials.c.id == rows["user:2"]["id"], expires_at=int(time.time()) - 60)

    response = forge_uninstall(stack, victim, clean=True)

    assert response.status_code == 403 and response.json()["error"] == "uninstall_unverifiable"
    [row] = [r for r in portal_rows(stack) if r["member_id"] == victim["member_id"]]
    assert (row["status"], row["uninstall_pending_at"]) == ("installed", None)
    after = {c["subject"]: c["status"] for c in credential_rows(stack) if c["account"] == victim["member_id"]}
    assert after == {"portal": "needs_reauth", "user:2": "active"}
