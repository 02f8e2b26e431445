"""`make demo` connects a sandbox Yandex organisation account to portal1 through the app's own code path."""

from __future__ import annotations

from scripts.demo import DEMO_YANDEX_LOGIN, connect_demo_yandex
from tests.integration.helpers import credential_rows, portal_info, portal_rows


def test_demo_connects_an_organisation_yandex_account(live_stack):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    said = connect_demo_yandex(live_stack, portal_info(live_stack)["member_id"])
    assert said == (
        f"Yandex: connected — organisation account {DEMO_YANDEX_LOGIN} on portal1 (create a conference at once)"
    )
    portal_id = portal_rows(live_stack)[0]["id"]
    yandex = [row for row in credential_rows(live_stack) if row["provider"] == "yandex"]
    assert [(row["portal_id"], row["subject"], row["status"], row["label"]) for row in yandex] == [
        (portal_id, "account", "active", f"{DEMO_YANDEX_LOGIN}@yandex.ru")
    ]


def test_cli_refuses_an_unknown_portal(live_stack):
    result = live_stack.flask("integrations", "yandex-connect", "--portal", "nope", "--code", "1234567")
    assert result.returncode == 1
    assert "Error: The application is not installed on this portal." in result.stderr
    assert [row for row in credential_rows(live_stack) if row["provider"] == "yandex"] == []
