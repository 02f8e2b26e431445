"""Finding 6: ONAPPUPDATE writes and sets up only with an admin's proven token, and sets up once per version."""

import pytest
import requests

from models.security import token_hash
from tests.integration.helpers import (
    clear_calls,
    credential_rows,
    event_form,
    portal_info,
    portal_rows,
    rest_calls,
)

SETUP_CALLS = ("imbot.register", "event.bind")


@pytest.fixture
def installed(live_stack):
    result = live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result["body"]
    return portal_info(live_stack)


def setup_calls(stack) -> list[str]:
    return [method for method in rest_calls(stack) if method in SETUP_CALLS]


def test_update_with_only_the_application_token_writes_nothing_and_sets_nothing_up(live_stack, installed):
    portals_before, creds_before = portal_rows(live_stack), credential_rows(live_stack)
    clear_calls(live_stack)
    form = event_form(live_stack, "event-ONAPPUPDATE.json", installed, **{"data[VERSION]": "99.0.0"})
    for key in ("auth[access_token]", "auth[refresh_token]"):
        del form[key]

    for _ in range(3):
        response = requests.post(f"{live_stack.app_url}/events", data=form, timeout=30)
        assert response.status_code == 403 and response.json()["error"] == "not_admin"

    assert portal_rows(live_stack) == portals_before
    assert credential_rows(live_stack) == creds_before
    assert rest_calls(live_stack) == []


def test_setup_runs_once_per_version(live_stack, installed):
    clear_calls(live_stack)
    first = live_stack.control("POST", "/_sandbox/portals/portal1/update", {"version": "2.0.0"}, expect=200)
    assert first["status"] == 200, first
    assert setup_calls(live_stack) == ["imbot.register", "event.bind", "event.bind", "event.bind"]

    clear_calls(live_stack)
    again = live_stack.control("POST", "/_sandbox/portals/portal1/update", {"version": "2.0.0"}, expect=200)
    assert again["status"] == 200, again
    assert setup_calls(live_stack) == []
    [row] = portal_rows(live_stack)
    assert (row["version"], row["setup_version"]) == ("2.0.0", "2.0.0")
    # The repeated update still carried Bitrix24's new application token: it is stored all the same.
    assert row["application_token_hash"] == token_hash(portal_info(live_stack)["application_token"])

    clear_calls(live_stack)
    newer = live_stack.control("POST", "/_sandbox/portals/portal1/update", {"version": "2.1.0"}, expect=200)
    assert newer["status"] == 200, newer
    assert setup_calls(live_stack) == ["imbot.register", "event.bind", "event.bind", "event.bind"]
    assert portal_rows(live_stack)[0]["setup_version"] == "2.1.0"
