"""The Connections card in the sandbox portal: a portal admin sees every credential of the portal in words."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa
from playwright.sync_api import expect

from database import credentials
from tests.browser.helpers import UI_TEXT, app_frame, open_app, open_app_in
from tests.integration.helpers import app_db

pytestmark = pytest.mark.browser

AMO_ACCESS = "amo-access-never-shown"
AMO_REFRESH = "amo-refresh-never-shown"


def update_credentials(stack, *where, **values) -> None:
    """Change credential rows of the live app's database, as the keeper would."""
    db = app_db(stack)
    try:
        with db.write() as conn:
            conn.execute(sa.update(credentials).where(*where).values(**values))
    finally:
        db.dispose()


def register_amocrm(stack) -> None:
    """An operator-level amoCRM account (bound to no portal), through the admin API."""
    answer = requests.post(
        f"{stack.app_url}/api/admin/amocrm/accounts",
        headers={"X-API-Token": stack.env["ADMIN_API_TOKEN"]},
        json={"subdomain": "shop", "access_token": AMO_ACCESS, "refresh_token": AMO_REFRESH, "expires_in": 86400},
        timeout=10,
    )
    assert answer.status_code == 201


def open_card(page, stack, *, lang: str = "ru"):
    """The app as the portal admin on its Settings tab; returns the frame locator."""
    app = open_app(page, stack, user_id=1) if lang == "ru" else open_app_in(page, stack, lang, user_id=1)
    app.locator("[data-testid=tab-settings]").click()
    expect(app.locator("[data-testid=connections]")).to_be_visible()
    return app


def test_admin_sees_every_credential_of_the_portal(live_stack, page):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    # An employee's open stores their own Bitrix24 pair; then the keeper gives up on it.
    app = open_app(page, live_stack, user_id=2)
    expect(app.locator("[data-testid=greeting]")).to_contain_text("Мария")
    update_credentials(
        live_stack,
        credentials.c.subject == "user:2",
        status="needs_reauth",
        last_error="invalid_grant",
        last_error_at=int(time.time()),
    )
    register_amocrm(live_stack)

    app = open_card(page, live_stack)
    portal = app.locator("[data-testid=connection-bitrix24-portal]")
    expect(portal.locator("[data-testid=connection-status]")).to_have_text("Работает")
    expect(portal.locator("[data-testid=connection-label]")).to_have_text(live_stack.sandbox["portals"][0]["domain"])
    expect(portal.locator("[data-testid=connection-times]")).to_contain_text("Следующее обновление")
    expect(portal.locator("[data-testid=connection-refresh-left]")).to_contain_text("Refresh-токен действует ещё")

    employees = app.locator("[data-testid=connection-bitrix24-employees]")
    expect(employees.locator("[data-testid=connection-status]")).to_have_text("Нужна повторная авторизация")
    expect(employees.locator("[data-testid=connection-counts]")).to_contain_text("Нужна повторная авторизация: 1")
    expect(employees.locator("[data-testid=connection-error]")).to_contain_text("больше не принимает")
    expect(employees.locator("[data-testid=connection-error]")).to_contain_text("Авторизуйтесь заново")
    expect(employees.locator("[data-testid=connection-action]")).to_contain_text("при следующем открытии")

    yandex = app.locator("[data-testid=connection-yandex-portal]")
    expect(yandex.locator("[data-testid=connection-status]")).to_have_text("Не подключён")
    expect(yandex.locator("[data-testid=connection-yandex-connect]")).to_be_visible()
    # The operator's amoCRM account is bound to no portal: this portal's admin does not see it.
    expect(app.locator("[data-testid=connection-amocrm-none]")).to_be_visible()
    expect(app.locator("[data-testid=connection-amocrm-account]")).to_have_count(0)
    assert page.errors == []


def test_an_amocrm_account_bound_to_the_portal_shows_the_operator_instruction(live_stack, page):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    register_amocrm(live_stack)
    db = app_db(live_stack)
    try:
        with db.read() as conn:
            portal_id = conn.execute(
                sa.select(credentials.c.portal_id).where(credentials.c.subject == "portal")
            ).scalar_one()
    finally:
        db.dispose()
    update_credentials(
        live_stack,
        credentials.c.provider == "amocrm",
        portal_id=portal_id,
        status="needs_reauth",
        last_error="lost_response",
    )
    app = open_card(page, live_stack, lang="en")
    amo = app.locator("[data-testid=connection-amocrm-account]")
    expect(amo.locator("[data-testid=connection-status]")).to_have_text("Sign-in needed again")
    expect(amo.locator("[data-testid=connection-label]")).to_have_text("shop")
    expect(amo.locator("[data-testid=connection-error]")).to_contain_text("A refresh answer was lost")
    expect(amo.locator("[data-testid=connection-action]")).to_contain_text("Ask the app operator")
    text = app_frame(page).evaluate(UI_TEXT)
    assert AMO_ACCESS not in text and AMO_REFRESH not in text
    assert page.errors == []


def test_employees_have_no_connections_card(live_stack, page):
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    app = open_app(page, live_stack, user_id=2)
    expect(app.locator("[data-testid=greeting]")).to_contain_text("Мария")
    expect(app.locator("[data-testid=tab-settings]")).to_have_count(0)
    expect(app.locator("[data-testid=connections]")).to_have_count(0)
