"""The app opened outside the portal in Chromium: the OAuth code flow through the sandbox portal, then the UI."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from database import oauth_states
from tests.integration.helpers import portal_info, table_rows

pytestmark = pytest.mark.browser


def test_code_flow_opens_the_app_in_a_normal_tab(live_stack, page, artifacts):
    """A bookmark of the app: the portal form, the portal's consent, back with a code, the UI for Иван."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    domain = portal_info(live_stack)["domain"]

    page.goto(f"{live_stack.app_url}/auth/bitrix24")
    page.locator("[data-testid=oauth-portal]").fill(domain)
    page.locator("[data-testid=oauth-submit]").click()

    # The sandbox portal's consent page signs in its admin (user 1) and sends the browser back.
    expect(page.locator("[data-testid=greeting]")).to_contain_text("Иван")
    expect(page.locator("[data-testid=conferences]")).to_be_visible()
    assert page.url == f"{live_stack.app_url}/auth/bitrix24/app", "the spent code does not stay in the address bar"
    session = [c for c in page.context.cookies() if c["name"] == "b24_web_session"]
    assert len(session) == 1 and session[0]["httpOnly"] is True and session[0]["sameSite"] == "Lax"
    assert [c["name"] for c in page.context.cookies() if c["name"] == "bitrix24_oauth_nonce"] == []
    rows = table_rows(live_stack, oauth_states)
    assert len(rows) == 1 and rows[0]["used_at"] is not None

    # A reload keeps the user signed in (the cookie), with no new trip to the portal.
    page.reload()
    expect(page.locator("[data-testid=greeting]")).to_contain_text("Иван")
    assert len(table_rows(live_stack, oauth_states)) == 1
    page.screenshot(path=str(artifacts / "oauth-tab.png"), full_page=True)
    assert page.errors == []
