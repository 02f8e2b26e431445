"""Install, update and uninstall over real HTTP against the sandbox portal, forged installs included."""

import time

import pytest
import requests

from tests.conftest import load_fixture
from tests.integration.helpers import (
    credential_rows,
    install_event_form,
    mint,
    portal_info,
    portal_rows,
)


def install(stack, mode="event", name="portal1"):
    return stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": mode}, expect=200)


def test_event_install_records_portal_and_sets_it_up(live_stack):
    result = install(live_stack)
    assert result["status"] == 200, result["body"]
    sandbox_portal = portal_info(live_stack)
    [row] = portal_rows(live_stack)
    assert row["member_id"] == sandbox_portal["member_id"]
    assert row["domain"] == sandbox_portal["domain"]
    assert row["status"] == "installed" and row["bot_id"]
    assert row["application_token_hash"] and row["application_token_hash"] != sandbox_portal["application_token"]
    [cred] = credential_rows(live_stack)
    assert (cred["provider"], cred["subject"], cred["status"]) == ("bitrix24", "portal", "active")
    assert cred["refresh_token_enc"] and "refresh" not in cred["refresh_token_enc"][:10]
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    [bot] = state["bots"]
    assert bot["code"] == "telemost_openlines_bot"
    # The bot's profile text comes from the catalog, in the portal's language (LANGUAGE_ID=ru).
    assert bot["properties"]["WORK_POSITION"] == "Открытые линии: передаёт диалог оператору"
    assert all(url.endswith("/python_bot/") for key, url in bot["handlers"].items())
    bound = {(e["event"], e["handler"]) for e in state["events"]}
    assert ("ONAPPUNINSTALL", f"{live_stack.app_url}/events") in bound


def test_reinstall_is_idempotent(live_stack):
    install(live_stack)
    install(live_stack)
    assert len(portal_rows(live_stack)) == 1
    assert len([c for c in credential_rows(live_stack) if c["subject"] == "portal"]) == 1
    state = live_stack.control("GET", "/_sandbox/portals/portal1/state")
    assert len(state["bots"]) == 1
    assert len([e for e in state["events"] if e["event"] == "ONAPPUNINSTALL"]) == 1


def test_installer_page_path(live_stack):
    result = install(live_stack, mode="installer")
    assert result["status"] == 200, result["body"]
    assert 'id="boot"' in result["body"] and '"ok": true' in result["body"].replace('"ok":true', '"ok": true')
    [row] = portal_rows(live_stack)
    assert row["status"] == "installed"


def test_forged_install_with_another_apps_token_is_refused(live_stack):
    foreign = mint(live_stack, client_id="local.someone.else")
    form = install_event_form(live_stack, foreign, application_token="forged")
    response = requests.post(f"{live_stack.app_url}/install", data=form, timeout=30)
    assert response.status_code == 403 and response.json()["error"] == "foreign_app"
    assert portal_rows(live_stack) == [] and credential_rows(live_stack) == []


def test_forged_install_with_domain_elsewhere_is_refused(live_stack):
    tokens = mint(live_stack)
    form = install_event_form(live_stack, tokens, application_token="x" * 32, **{"auth[domain]": "evil.example.com"})
    response = requests.post(f"{live_stack.app_url}/install", data=form, timeout=30)
    assert response.status_code == 403 and response.json()["error"] == "domain_mismatch"
    assert portal_rows(live_stack) == []


def test_documentation_payload_with_made_up_tokens_is_refused(live_stack):
    form = load_fixture("event-ONAPPINSTALL.json")["payload"]
    response = requests.post(f"{live_stack.app_url}/install", data=form, timeout=30)
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message"} and response.json()["error"] == "token_not_valid"
    assert portal_rows(live_stack) == []


def test_non_admin_cannot_reinstall_with_a_new_application_token(live_stack):
    install(live_stack)
    before = portal_rows(live_stack)
    employee = mint(live_stack, user_id=2)
    form = install_event_form(live_stack, employee, application_token="attacker-chosen")
    response = requests.post(f"{live_stack.app_url}/install", data=form, timeout=30)
    assert response.status_code == 403 and response.json()["error"] == "not_admin"
    assert portal_rows(live_stack) == before


def test_uninstall_with_wrong_token_changes_nothing(live_stack):
    install(live_stack)
    before = portal_rows(live_stack)
    form = dict(load_fixture("event-ONAPPUNINSTALL.json")["payload"])
    form["auth[member_id]"] = before[0]["member_id"]
    form["auth[domain]"] = before[0]["domain"]
    for token in ("wrong", ""):
        form["auth[application_token]"] = token
        response = requests.post(f"{live_stack.app_url}/events", data=form, timeout=30)
        assert response.status_code == 403 and response.json()["error"] == "bad_application_token"
    assert portal_rows(live_stack) == before


def test_uninstall_keeps_or_cleans_data(live_stack):
    install(live_stack)
    result = live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": False}, expect=200)
    assert result["status"] == 200, result
    [row] = portal_rows(live_stack)
    assert row["status"] == "uninstalled"
    assert [c["status"] for c in credential_rows(live_stack)] == ["revoked"]

    install(live_stack)
    assert portal_rows(live_stack)[0]["status"] == "installed"
    assert live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": True})["status"] == 200
    assert portal_rows(live_stack)[0]["status"] == "uninstalled"
    assert credential_rows(live_stack) == []


def test_update_event(live_stack):
    install(live_stack)
    result = live_stack.control("POST", "/_sandbox/portals/portal1/update", {"version": "2.0.0"}, expect=200)
    assert result["status"] == 200, result
    [row] = portal_rows(live_stack)
    assert row["version"] == "2.0.0"
    # The update carried a new application token: later events must use it.
    assert live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": False})["status"] == 200


def test_malformed_event_bodies_are_400(live_stack):
    url = f"{live_stack.app_url}/events"
    bad = requests.post(url, data="{not json", headers={"Content-Type": "application/json"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    mixed = requests.post(url, data={"event": "ONAPPUNINSTALL", "auth": "x", "auth[member_id]": "y"}, timeout=10)
    assert mixed.status_code == 400
    nameless = requests.post(url, data={"x": "1"}, timeout=10)
    assert nameless.status_code == 400


def test_bot_handler_url_ends_with_slash(live_stack):
    install(live_stack)
    info = portal_info(live_stack)
    form = {
        "event": "ONIMBOTJOINCHAT",
        "auth[member_id]": info["member_id"],
        "ts": str(int(time.time())),
        "auth[application_token]": info["application_token"],
    }
    assert requests.post(f"{live_stack.app_url}/python_bot/", data=form, timeout=10).status_code == 200
    form["auth[application_token]"] = "forged"
    assert requests.post(f"{live_stack.app_url}/python_bot/", data=form, timeout=10).status_code == 403


def test_update_with_an_employee_token_cannot_change_the_application_token(live_stack):
    install(live_stack)
    before = portal_rows(live_stack)
    employee = mint(live_stack, user_id=2)
    form = dict(load_fixture("event-ONAPPUPDATE.json")["payload"])
    form.update(
        {
            "auth[member_id]": employee["member_id"],
            "auth[domain]": employee["domain"],
            "auth[access_token]": employee["access_token"],
            "auth[refresh_token]": employee["refresh_token"],
            "auth[client_endpoint]": employee["client_endpoint"],
            "auth[application_token]": "hijack",
        }
    )
    response = requests.post(f"{live_stack.app_url}/events", data=form, timeout=30)
    assert response.status_code == 403
    assert portal_rows(live_stack) == before


@pytest.mark.parametrize(
    "extra", [{}, {"auth[expires]": "1796000000", "auth[user_id]": "1"}, {"auth[scope]": "imbot imopenlines calendar"}]
)
def test_onappinstall_with_or_without_unconfirmed_fields(live_stack, extra):
    """Spec §1.4: auth[expires]/auth[user_id] and the scope separator are unconfirmed; both shapes install."""
    admin = mint(live_stack, user_id=1)
    form = install_event_form(live_stack, admin, application_token="a" * 32, **extra)
    response = requests.post(f"{live_stack.app_url}/install", data=form, timeout=30)
    assert response.status_code == 200, response.text
    assert portal_rows(live_stack)[0]["admin_user_id"] == 1


def test_forged_uninstall_with_the_right_token_is_refused_while_installed(live_stack):
    """Employees can read the application token in the iframe POST; Bitrix24 itself says we are installed."""
    install(live_stack)
    info = portal_info(live_stack)
    before = portal_rows(live_stack)
    form = dict(load_fixture("event-ONAPPUNINSTALL.json")["payload"])
    form.update(
        {
            "auth[member_id]": info["member_id"],
            "auth[domain]": info["domain"],
            "auth[application_token]": info["application_token"],
        }
    )
    response = requests.post(f"{live_stack.app_url}/events", data=form, timeout=30)
    assert response.status_code == 403 and response.json()["error"] == "still_installed"
    assert portal_rows(live_stack) == before and credential_rows(live_stack)


def test_update_with_the_right_token_but_an_employees_pair_writes_nothing(live_stack):
    """Finding 6: the application token and an employee's pair prove nothing; no version, no pair, no set-up."""
    install(live_stack)
    info = portal_info(live_stack)
    before = credential_rows(live_stack)
    portal_before = portal_rows(live_stack)
    employee = mint(live_stack, user_id=2)
    form = dict(load_fixture("event-ONAPPUPDATE.json")["payload"])
    form.update(
        {
            "auth[member_id]": info["member_id"],
            "auth[domain]": info["domain"],
            "auth[access_token]": employee["access_token"],
            "auth[refresh_token]": employee["refresh_token"],
            "auth[client_endpoint]": employee["client_endpoint"],
            "auth[application_token]": info["application_token"],
        }
    )
    response = requests.post(f"{live_stack.app_url}/events", data=form, timeout=30)
    assert response.status_code == 403 and response.json()["error"] == "not_admin"
    after = credential_rows(live_stack)
    assert [(c["id"], c["version"], c["refresh_token_enc"]) for c in after if c["subject"] == "portal"] == [
        (c["id"], c["version"], c["refresh_token_enc"]) for c in before if c["subject"] == "portal"
    ]
    assert portal_rows(live_stack) == portal_before


def test_update_after_uninstall_does_not_revive_the_portal(live_stack):
    install(live_stack)
    info = portal_info(live_stack)
    live_stack.control("POST", "/_sandbox/portals/portal1/uninstall", {"clean": True})
    form = {
        "event": "ONAPPUPDATE",
        "data[VERSION]": "3",
        "auth[member_id]": info["member_id"],
        "auth[application_token]": info["application_token"],
    }
    response = requests.post(f"{live_stack.app_url}/events", data=form, timeout=30)
    assert response.status_code == 403
    assert portal_rows(live_stack)[0]["status"] == "uninstalled"
