"""Admin features inside the portal frame: connecting Yandex in a popup, the re-auth banner, session renewal."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from database import credentials
from scripts.stack import Stack
from tests.integration.helpers import app_db

pytestmark = pytest.mark.browser


def open_app(page, stack, user_id: int):
    page.goto(f"{stack.sandbox['base']}/_sandbox/portals/portal1/open?user_id={user_id}")
    return page.frame_locator("#app-frame")


def open_settings(page, stack, user_id: int = 1):
    """The app as a portal admin, on its Settings tab (the portal's Yandex account and API token cards)."""
    app = open_app(page, stack, user_id)
    app.locator("[data-testid=tab-settings]").click()
    return app


def test_admin_connects_yandex_in_a_popup(live_stack, page):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    app = open_settings(page, live_stack)
    expect(app.locator("[data-testid=yandex-status]")).to_be_visible()
    with page.expect_popup() as popup_info:
        app.locator("[data-testid=connect-yandex]").click()
    popup = popup_info.value
    # The start page says where the account goes and waits for the explicit "Connect".
    member = live_stack.sandbox["portals"][0]
    expect(popup.locator("[data-testid=connect-domain]")).to_have_text(member["domain"])
    expect(popup.locator("[data-testid=connect-user]")).to_contain_text("Иван")
    popup.locator("[data-testid=connect-button]").click()
    # Then the sandbox's Yandex consent and back to the callback.
    expect(popup.locator("[data-testid=result-page]")).to_contain_text("подключён")
    popup.wait_for_event("close", timeout=10_000)  # the result page closes itself
    expect(app.locator("[data-testid=yandex-status]")).to_contain_text("Подключено")
    expect(app.locator("[data-testid=yandex-account]")).not_to_be_empty()
    assert page.errors == []


def test_banner_when_the_portal_credential_needs_reauth(live_stack, page):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    db = app_db(live_stack)
    try:
        with db.write() as conn:
            conn.execute(
                sa.update(credentials)
                .where(credentials.c.subject == "portal")
                .values(status="needs_reauth", last_error="invalid_grant")
            )
    finally:
        db.dispose()
    app = open_app(page, live_stack, user_id=2)
    expect(app.locator("[data-testid=alerts]")).to_contain_text("потеряло доступ к порталу")
    # An admin opening the app brings a fresh pair: the portal credential is active again.
    app = open_app(page, live_stack, user_id=1)
    expect(app.locator("[data-testid=greeting]")).to_contain_text("Иван")
    expect(app.locator("[data-testid=alerts]")).to_have_count(0)


@pytest.fixture
def short_session_stack(tmp_path):
    stack = Stack(
        database_path=str(tmp_path / "live.db"), log_dir=tmp_path, extra_app_env={"SESSION_TTL_SECONDS": "60"}
    )
    yield stack
    stack.stop()


def test_session_is_renewed_through_the_frame_sdk(short_session_stack, page):
    stack = short_session_stack
    stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    renewals = []
    page.on("request", lambda request: renewals.append(request.url) if request.url.endswith("/api/session") else None)
    app = open_settings(page, stack)
    # A 60 s token is inside the renewal margin at once: the first API call exchanges a fresh
    # Bitrix24 auth from the frame SDK for a new session token, and the call then succeeds.
    expect(app.locator("[data-testid=yandex-status]")).to_be_visible()
    expect(app.locator("[data-testid=integrations-error]")).to_have_count(0)
    assert renewals, "the app did not renew its session through /api/session"
    assert page.errors == []


def test_admin_issues_a_portal_api_token_that_works(live_stack, page):
    import requests

    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    app = open_settings(page, live_stack)
    app.locator("[data-testid=api-token-issue]").click()
    value = app.locator("[data-testid=api-token-value]")
    expect(value).to_be_visible()
    token = value.input_value()
    member_id = live_stack.sandbox["portals"][0]["member_id"]
    answer = requests.get(
        f"{live_stack.app_url}/api/admin/tokens/bitrix24/{member_id}", headers={"X-API-Token": token}, timeout=10
    )
    assert answer.status_code == 200 and answer.json()["access_token"]
    assert "refresh_token" not in answer.json()
    # Employees do not see the card.
    app = open_app(page, live_stack, user_id=2)
    expect(app.locator("[data-testid=greeting]")).to_contain_text("Мария")
    expect(app.locator("[data-testid=tab-settings]")).to_have_count(0)
    expect(app.locator("[data-testid=api-token]")).to_have_count(0)
