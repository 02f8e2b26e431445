"""Meetings from a CRM card in Chromium (issue 10 item 1): the app opened in a deal's tab in the sandbox portal
lists that deal's meetings, creates one bound to it with the responsible person pre-selected, and another
deal's tab does not list it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import connect_portal_yandex, portal_state
from tests.browser.test_conferences_ui import conference_rows

pytestmark = [pytest.mark.browser]


def open_tab(page, stack, user_id: int, placement: str, record_id: int):
    """The sandbox portal page with the app in a CRM card's tab; returns the frame locator."""
    page.goto(
        f"{stack.sandbox['base']}/_sandbox/portals/portal1/open?user_id={user_id}&placement={placement}&id={record_id}"
    )
    return page.frame_locator("#app-frame")


def test_deal_tab_creates_a_bound_meeting_listed_only_in_that_deal(live_stack, page):
    """Deal 42 (responsible: user 2) opened by user 1: its heading, the responsible pre-selected, the meeting
    bound (database, calendar crm_fields), listed in deal 42's tab and not in deal 43's."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    connect_portal_yandex(page, live_stack)
    app = open_tab(page, live_stack, 1, "CRM_DEAL_DETAIL_TAB", 42)
    expect(app.locator("[data-testid=conferences]")).to_have_attribute("data-crm", "deal:42")
    expect(app.locator("h2", has_text="Встречи по сделке №42")).to_be_visible()
    expect(app.locator("[data-testid=crm-record-title]")).to_have_text("Поставка оборудования")
    expect(app.locator("[data-testid=conferences-empty]")).to_be_visible()

    app.locator("[data-testid=conference-new]").click()
    expect(app.locator("[data-testid=form-crm-binding]")).to_contain_text("сделке №42")
    chosen = app.locator("[data-testid=picker-invitees-chosen] li")
    expect(chosen).to_have_count(1)
    expect(app.locator("[data-testid=picker-invitees-chosen] [data-user-id='2']")).to_contain_text("Мария Смирнова")
    app.locator("[data-testid=form-name]").fill("Обсуждение поставки")
    app.locator("[data-testid=form-date]").fill((dt.date.today() + dt.timedelta(days=2)).isoformat())
    app.locator("[data-testid=form-time]").fill("14:00")
    app.locator("[data-testid=form-timezone]").fill("Europe/Moscow")
    app.locator("[data-testid=form-submit]").click()
    expect(app.locator("[data-testid=conference-item]", has_text="Обсуждение поставки")).to_have_count(1)

    [row] = conference_rows(live_stack)
    assert row["crm_binding"] == '{"entity":"deal","id":42}'
    assert json.loads(row["invitees"]) == [2]
    [event] = portal_state(live_stack)["calendar_events"]
    assert event["CRM_FIELDS"] == ["D_42"]

    # Another deal's tab: nothing listed there.
    other = open_tab(page, live_stack, 1, "CRM_DEAL_DETAIL_TAB", 43)
    expect(other.locator("h2", has_text="Встречи по сделке №43")).to_be_visible()
    expect(other.locator("[data-testid=conferences-empty]")).to_be_visible()
    expect(other.locator("[data-testid=conference-item]")).to_have_count(0)
    # Back in deal 42's tab, it is there.
    again = open_tab(page, live_stack, 1, "CRM_DEAL_DETAIL_TAB", 42)
    expect(again.locator("[data-testid=conference-item]", has_text="Обсуждение поставки")).to_have_count(1)
    assert page.errors == []
