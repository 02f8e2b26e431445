"""The Conferences tab end to end inside the sandbox portal's iframe (issue 8): a broadcast with two cohosts and
three invitees is created, listed, its link copied, its time edited and it is deleted — with the portal's calendar
and notifications checked at each step — and the same page in English shows no Russian UI text."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.helpers import (
    CYRILLIC,
    UI_TEXT,
    app_frame,
    connect_portal_yandex,
    needs_backend,
    open_app,
    open_app_in,
    portal_calls,
    portal_state,
    portal_users,
)
from tests.integration.helpers import app_db, credential_rows

pytestmark = [pytest.mark.browser, needs_backend("models.conference", "the conferences backend (branch conf)")]

INVITEES = [2, 3, 4]
COHOSTS = [5, 6]


def conference_rows(stack) -> list[dict]:
    """Every row of the app's conferences table."""
    db = app_db(stack)
    try:
        table = sa.Table("conferences", sa.MetaData(), autoload_with=db.engine)
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]
    finally:
        db.dispose()


def notified(state: dict, needle: str) -> set[int]:
    """Users whose portal notifications mention `needle`."""
    return {int(n["user_id"]) for n in state["notifications"] if needle in (n.get("message") or "")}


def pick_invitees(page, app) -> None:
    """Choose the invitees in the portal's own employee picker (it opens on the portal page, not in the frame)."""
    app.locator("[data-testid=picker-invitees-portal]").click()
    picker = page.locator("[data-testid=sandbox-user-picker]")
    expect(picker).to_be_visible()
    for user_id in INVITEES:
        picker.locator(f"[data-user-id='{user_id}'] input").check()
    page.locator("[data-testid=sandbox-user-picker-ok]").click()
    expect(app.locator("[data-testid=picker-invitees-chosen] li")).to_have_count(len(INVITEES))


def test_broadcast_lifecycle_with_calendar_and_notifications(live_stack, page, artifacts):
    """Create → list → copy link → edit time → delete, checking the database and the portal at each step."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    connect_portal_yandex(page, live_stack)
    emails = [portal_users(live_stack, COHOSTS)[uid]["EMAIL"] for uid in COHOSTS]
    day = (dt.date.today() + dt.timedelta(days=3)).isoformat()

    app = open_app(page, live_stack, user_id=1)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    app.locator("[data-testid=conference-new]").click()
    app.locator("[data-testid=form-name]").fill("Квартальная трансляция")
    app.locator("label:has([data-testid=form-type-broadcast])").click()
    app.locator("[data-testid=form-date]").fill(day)
    app.locator("[data-testid=form-time]").fill("10:00")
    app.locator("[data-testid=form-duration]").fill("90")
    app.locator("[data-testid=form-timezone]").fill("Europe/Moscow")
    app.locator("[data-testid=form-cohosts]").fill("\n".join(emails))
    app.locator("[data-testid=form-stream-title]").fill("Итоги квартала")
    pick_invitees(page, app)
    expect(app.locator("[data-testid=form-calendar]")).to_be_checked()
    expect(app.locator("[data-testid=form-invite]")).to_be_checked()
    app.locator("[data-testid=form-submit]").click()

    # Listed among the upcoming ones, as a broadcast, with join and watch buttons.
    item = app.locator("[data-testid=conference-item]", has_text="Квартальная трансляция")
    expect(item).to_have_count(1)
    expect(item.locator("[data-testid=conference-type]")).to_have_text("Трансляция")
    expect(item.locator("[data-testid=conference-when]")).to_contain_text("10:00")
    expect(item.locator("[data-testid=conference-watch]")).to_be_visible()
    rows = conference_rows(live_stack)
    assert len(rows) == 1
    row = rows[0]
    assert row["type"] == "broadcast"
    assert row["start_date"] == day and row["start_time"] == "10:00"
    assert row["duration_minutes"] == 90
    assert row["link"] and row["calendar_event_id"]
    assert not row["failed_step"]
    expect(item.locator("[data-testid=conference-join]")).to_have_attribute("href", row["link"])
    page.screenshot(path=str(artifacts / "conferences.png"), full_page=True)
    # The portal got one calendar event with the invitees and the link, and each invitee a notification.
    state = portal_state(live_stack)
    assert len(state["calendar_events"]) == 1
    event = state["calendar_events"][0]
    assert row["link"] in str(event)
    assert notified(state, row["link"]) == set(INVITEES)

    # One click copies the link: a toast says so and the clipboard holds it.
    item.locator("[data-testid=conference-copy]").click()
    expect(app.locator("[data-testid=toast]")).to_have_text("Ссылка скопирована")
    assert page.evaluate("navigator.clipboard.readText()") == row["link"]

    # Edit the time: the row, the list, the calendar event and the invitees follow.
    item.locator("[data-testid=conference-edit]").click()
    chosen = app.locator("[data-testid=picker-invitees-chosen] li")
    expect(chosen).to_have_count(len(INVITEES))
    expect(chosen.first).not_to_contain_text("№")  # names, not ids: the page remembers whom it picked
    app.locator("[data-testid=form-time]").fill("11:30")
    app.locator("[data-testid=form-submit]").click()
    expect(item.locator("[data-testid=conference-when]")).to_contain_text("11:30")
    [edited] = conference_rows(live_stack)
    assert edited["start_time"] == "11:30" and edited["id"] == row["id"]
    assert "calendar.event.update" in portal_calls(live_stack)
    state = portal_state(live_stack)
    assert "11:30" in str(state["calendar_events"][0])
    assert {int(n["user_id"]) for n in state["notifications"] if "11:30" in (n.get("message") or "")} == set(INVITEES)

    # Delete, after a confirmation: gone from the list, the database and the calendar; the invitees are told.
    item.locator("[data-testid=conference-delete]").click()
    expect(item.locator("[data-testid=conference-delete-confirm]")).to_be_visible()
    item.locator("[data-testid=conference-delete-yes]").click()
    expect(app.locator("[data-testid=conference-item]")).to_have_count(0)
    expect(app.locator("[data-testid=conferences-empty]")).to_be_visible()
    assert [r for r in conference_rows(live_stack) if r["status"] != "cancelled"] == []
    assert "calendar.event.delete" in portal_calls(live_stack)
    assert portal_state(live_stack)["calendar_events"] == []
    assert page.errors == []


def test_meeting_with_a_searched_invitee_in_the_profile_time_zone(live_stack, page):
    """Besides the portal's picker, the form searches the portal's employees (GET /api/bitrix/users); with the
    time zone left empty the meeting takes the one of the user's Bitrix24 profile."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    connect_portal_yandex(page, live_stack)
    app = open_app(page, live_stack, user_id=2)
    app.locator("[data-testid=conference-new]").click()
    app.locator("[data-testid=form-name]").fill("Созвон с Джоном")
    app.locator("[data-testid=form-date]").fill((dt.date.today() + dt.timedelta(days=2)).isoformat())
    app.locator("[data-testid=form-time]").fill("15:00")
    app.locator("[data-testid=form-timezone]").fill("")  # emptied: the zone of the user's profile
    app.locator("[data-testid=picker-invitees-search-open]").click()
    search = app.locator("[data-testid=picker-invitees-search]")
    search.locator("input[type=search]").fill("Smith")
    search.locator("[data-user-id='3'] input").check()
    expect(app.locator("[data-testid=picker-invitees-chosen] [data-user-id='3']")).to_contain_text("John Smith")
    app.locator("[data-testid=form-submit]").click()
    expect(app.locator("[data-testid=conference-item]", has_text="Созвон с Джоном")).to_have_count(1)
    [row] = conference_rows(live_stack)
    assert row["owner_id"] == 2
    assert json.loads(row["invitees"]) == [3]
    assert row["timezone"] == portal_users(live_stack, [2])[2]["TIME_ZONE"]
    assert notified(portal_state(live_stack), row["link"]) == {3}
    assert page.errors == []


def test_what_failed_is_shown_and_retry_finishes_it(live_stack, page):
    """The portal fails after Telemost made the meeting: the row says exactly what is missing, and «Доделать»
    finishes it once the portal is back."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    connect_portal_yandex(page, live_stack)
    app = open_app(page, live_stack, user_id=1)
    app.locator("[data-testid=conference-new]").click()
    app.locator("[data-testid=form-name]").fill("Разбор полётов")
    app.locator("[data-testid=form-date]").fill((dt.date.today() + dt.timedelta(days=1)).isoformat())
    app.locator("[data-testid=form-time]").fill("12:00")
    live_stack.control(
        "POST", "/_sandbox/faults", {"server": "portal", "mode": "5xx", "value": 500, "count": None}, expect=201
    )
    app.locator("[data-testid=form-submit]").click()
    item = app.locator("[data-testid=conference-item]", has_text="Разбор полётов")
    expect(item.locator("[data-testid=conference-failed-step]")).to_contain_text(
        "событие в календаре Битрикс24 не сохранено", timeout=60_000
    )
    [row] = conference_rows(live_stack)
    assert row["failed_step"] == "calendar" and row["link"]
    assert portal_state(live_stack)["calendar_events"] == []

    live_stack.control("DELETE", "/_sandbox/faults", expect=200)
    item.locator("[data-testid=conference-retry]").click()
    expect(item.locator("[data-testid=conference-failed-step]")).to_have_count(0)
    [row] = conference_rows(live_stack)
    assert row["failed_step"] is None and row["calendar_event_id"]
    assert len(portal_state(live_stack)["calendar_events"]) == 1
    assert page.errors == []


def test_employee_connects_a_personal_account_that_cannot_create_meetings(live_stack, page):
    """No account: the employee is told and connects their own; a personal Yandex ID refused by Telemost is
    remembered and the notice says why; an admin gets the «Подключить Яндекс» button instead."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    live_stack.control("POST", "/_sandbox/config", {"telemost_personal_restricted": True}, expect=200)
    app = open_app(page, live_stack, user_id=1)
    notice = app.locator("[data-testid=yandex-notice]")
    expect(notice).to_have_attribute("data-state", "none")
    expect(app.locator("[data-testid=notice-connect-yandex]")).to_have_text("Подключить Яндекс")

    app = open_app(page, live_stack, user_id=2)
    notice = app.locator("[data-testid=yandex-notice]")
    expect(notice).to_contain_text("Администратор портала ещё не подключил Яндекс")
    expect(app.locator("[data-testid=notice-connect-yandex]")).to_have_count(0)
    with page.expect_popup() as popup_info:
        app.locator("[data-testid=notice-connect-personal]").click()
    popup = popup_info.value
    popup.locator("[data-testid=connect-button]").click()
    expect(popup.locator("[data-testid=result-page]")).to_be_visible()
    popup.wait_for_event("close", timeout=10_000)
    expect(notice).to_have_attribute("data-state", "ok")
    expect(notice).to_contain_text("от вашего аккаунта")
    personal = [c for c in credential_rows(live_stack) if c["provider"] == "yandex"]
    assert [c["subject"] for c in personal] == ["user:2"]

    # Telemost refuses a personal Yandex ID: the form says so, and the notice now explains it for good.
    app.locator("[data-testid=conference-new]").click()
    app.locator("[data-testid=form-name]").fill("Планёрка")
    app.locator("[data-testid=form-submit]").click()
    expect(app.locator("[data-testid=form-error]")).to_contain_text("личный Яндекс ID")
    expect(notice).to_have_attribute("data-state", "restricted")
    expect(notice).to_contain_text("не может создавать встречи")
    assert conference_rows(live_stack) == []
    assert page.errors == []


def test_english_portal_user_sees_no_russian_ui_text(live_stack, page, artifacts):
    """LANG=en: the tab, the empty history, the form and the admin tabs speak English only."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    app = open_app_in(page, live_stack, "en", user_id=3)  # John Smith: a Latin name, an employee
    expect(app.locator("[data-testid=greeting]")).to_have_text("Hello, John Smith!")
    expect(app.locator("[data-testid=yandex-notice]")).to_contain_text("Yandex is not connected")
    expect(app.locator("[data-testid=conferences-empty]")).to_be_visible()
    frame = app_frame(page)
    assert frame.evaluate("document.documentElement.lang") == "en"
    assert not CYRILLIC.search(frame.evaluate(UI_TEXT)), frame.evaluate(UI_TEXT)

    app.locator("[data-testid=conference-new]").click()
    app.locator("label:has([data-testid=form-type-broadcast])").click()
    app.locator("[data-testid=form-submit]").click()  # empty name: the form says so in English
    expect(app.locator("[data-testid=conference-form]")).to_contain_text("Fill in this field")
    page.screenshot(path=str(artifacts / "conference-form-en.png"), full_page=True)
    assert not CYRILLIC.search(frame.evaluate(UI_TEXT)), frame.evaluate(UI_TEXT)

    # The admin's tabs too (the admin's own Cyrillic name is data, not UI text).
    app = open_app_in(page, live_stack, "en", user_id=1)
    expect(app.locator("[data-testid=greeting]")).to_have_text("Hello, Иван Петров!")
    frame = app_frame(page)
    settled = {
        "dialogs": "[data-testid=dialogs-empty], [data-testid=dialog-list], [data-testid=dialogs-error]",
        "settings": "[data-testid=yandex-status]",
    }
    for tab, selector in settled.items():
        app.locator(f"[data-testid=tab-{tab}]").click()
        expect(app.locator(selector)).to_be_visible()
        text = frame.evaluate(UI_TEXT).replace("Иван Петров", "")
        assert not CYRILLIC.search(text), text
    assert page.errors == []
