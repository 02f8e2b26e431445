"""Issue 7 finding 6, attacked harder: the attacker is an employee of the victim portal (so knows its
application token) and an admin of a portal of their own where our app is installed too. Their admin
token is genuine and ours, only of the wrong portal: it proves nothing about the victim portal."""

import pytest
import requests

from tests.integration.helpers import (
    clear_calls,
    credential_rows,
    event_form,
    install_event_form,
    mint,
    portal_info,
    portal_rows,
    rest_calls,
)


@pytest.fixture
def two_portals(make_stack):
    """portal1 (the victim) and portal2 (the attacker's own), both installed by their genuine events."""
    stack = make_stack(portals=2)
    for name in ("portal1", "portal2"):
        result = stack.control("POST", f"/_sandbox/portals/{name}/install", {"mode": "event"}, expect=200)
        assert result["status"] == 200, result["body"]
    return stack, portal_info(stack, "portal1")


def test_update_with_an_admin_token_of_another_portal_writes_nothing(two_portals):
    stack, victim = two_portals
    own_admin = mint(stack, portal="portal2", user_id=1)
    portals_before, creds_before = portal_rows(stack), credential_rows(stack)
    clear_calls(stack, "portal1")
    form = event_form(
        stack,
        "event-ONAPPUPDATE.json",
        victim,
        **{
            "data[VERSION]": "66.6.0",
            "auth[access_token]": own_admin["access_token"],
            "auth[refresh_token]": own_admin["refresh_token"],
            "auth[application_token]": "attacker-chosen",
        },
    )

    response = requests.post(f"{stack.app_url}/events", data=form, timeout=30)

    assert response.status_code == 403 and response.json()["error"] == "not_admin"
    assert portal_rows(stack) == portals_before
    assert credential_rows(stack) == creds_before
    assert rest_calls(stack, "portal1") == []


def test_install_event_claiming_the_victim_with_another_portals_admin_token_is_refused(two_portals):
    stack, victim = two_portals
    own_admin = mint(stack, portal="portal2", user_id=1)
    portals_before, creds_before = portal_rows(stack), credential_rows(stack)
    form = install_event_form(
        stack,
        own_admin,
        application_token="attacker-chosen",
        **{"auth[member_id]": victim["member_id"], "auth[domain]": victim["domain"]},
    )

    response = requests.post(f"{stack.app_url}/install", data=form, timeout=30)

    assert response.status_code == 403 and response.json()["error"] == "member_mismatch"
    assert portal_rows(stack) == portals_before
    assert credential_rows(stack) == creds_before
