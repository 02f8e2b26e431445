"""The Dialogs tab end to end inside the sandbox portal's iframe (issue 9 §7): a portal admin attaches the bot to
a line, sees a client's dialog with its hand-off and messages, sets working hours and switches the bot off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.helpers import needs_backend, open_app, portal_state
from tests.integration.helpers import app_db

pytestmark = pytest.mark.browser


def table_rows(stack, name: str) -> list[dict]:
    """Every row of one of the app's tables."""
    db = app_db(stack)
    try:
        table = sa.Table(name, sa.MetaData(), autoload_with=db.engine)
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]
    finally:
        db.dispose()


def open_dialogs(page, stack, user_id: int = 1):
    """The app as `user_id`, on the Dialogs tab."""
    app = open_app(page, stack, user_id)
    app.locator("[data-testid=tab-dialogs]").click()
    return app


@needs_backend("models.openlines", "the Open Lines backend (branch bot)")
def test_admin_attaches_the_bot_and_reads_a_dialog(live_stack, page, artifacts):
    """Attach → a client writes → the dialog, its hand-off and its message show; hours saved; switch off."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    app = open_dialogs(page, live_stack)
    lines = app.locator("[data-testid=line]")
    expect(lines).to_have_count(len(portal_state(live_stack)["lines"]))
    first = lines.first
    line_id = first.get_attribute("data-line-id")
    expect(first.locator("[data-testid=line-state]")).to_have_text("Бот не подключён")
    first.locator("[data-testid=line-attach]").click()
    expect(first.locator("[data-testid=line-state]")).to_have_text("Бот подключён")
    [line] = [ln for ln in portal_state(live_stack)["lines"] if str(ln.get("id", ln.get("ID"))) == line_id]
    assert str(line.get("WELCOME_BOT_ENABLE", line.get("config", {}).get("WELCOME_BOT_ENABLE"))) == "Y"

    # A client writes to that line: the bot stores the dialog and hands it to an operator.
    sent = live_stack.control(
        "POST",
        "/_sandbox/portals/portal1/openlines/message",
        {
            "line_id": line_id,
            "client": {"id": "client-17", "name": "Ольга Клиентова"},
            "text": "Здравствуйте, где мой заказ?",
            "connector": "livechat",
            "chat_id": None,
        },
        expect=200,
    )
    chat_id = sent["chat_id"]
    row = app.locator(f"[data-testid=dialog-item][data-chat-id='{chat_id}']")
    for _attempt in range(20):  # the work happens off the request path: refresh until it is done
        app.locator("[data-testid=dialogs-refresh]").click()
        if row.count() and "оператор" in row.locator("[data-testid=dialog-outcome]").inner_text().lower():
            break
        page.wait_for_timeout(500)
    expect(row).to_contain_text("Ольга Клиентова")
    expect(row.locator("[data-testid=dialog-outcome]")).to_have_text("Передан оператору")
    [dialog] = [d for d in table_rows(live_stack, "dialogs") if str(d["chat_id"]) == str(chat_id)]
    assert dialog["transfer_outcome"] == "transferred"

    row.click()
    detail = app.locator("[data-testid=dialog-detail]")
    expect(detail.locator("[data-testid=dialog-message][data-author=client]")).to_contain_text("где мой заказ")
    expect(detail.locator("[data-testid=dialog-detail-outcome]")).to_contain_text("Передан оператору")
    page.screenshot(path=str(artifacts / "dialog.png"), full_page=True)
    detail.locator("[data-testid=dialog-close]").click()

    # The same list as a spreadsheet file (fetched with the session, handed to the browser as a download).
    with page.expect_download() as download_info:
        app.locator("[data-testid=dialogs-csv]").click()
    csv_text = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    assert download_info.value.suggested_filename == "dialogs.csv"
    assert "Ольга Клиентова" in csv_text and str(chat_id) in csv_text

    # Working hours for the line: weekdays only, out-of-hours text, finish the dialog out of hours.
    first.locator("[data-testid=line-hours]").click()
    form = first.locator("[data-testid=line-hours-form]")
    form.locator("[data-testid=hours-limited]").check()
    form.locator("[data-testid=hours-text]").fill("Мы работаем с 9 до 18.")
    form.locator("[data-testid=hours-action-finish]").check()
    form.locator("[data-testid=hours-save]").click()
    expect(app.locator("[data-testid=toast]")).to_have_text("Часы работы сохранены")
    [saved] = [ln for ln in table_rows(live_stack, "bot_lines") if str(ln["line_id"]) == line_id]
    assert saved["out_of_hours_text"] == "Мы работаем с 9 до 18."
    assert saved["out_of_hours_action"] == "finish"
    schedule = json.loads(saved["schedule"])
    assert schedule["mon"] == [["09:00", "18:00"]] and schedule["sat"] == [] and schedule["sun"] == []

    # Greeting and hand-off: to the second line's queue instead of straight to an operator.
    second = lines.nth(1).get_attribute("data-line-id")
    app.locator("[data-testid=bot-greeting]").fill("Здравствуйте! Оператор скоро ответит.")
    app.locator("[data-testid=bot-transfer-queue]").check()
    app.locator("[data-testid=bot-queue]").select_option(second)
    app.locator("[data-testid=bot-settings-save]").click()
    expect(app.locator("[data-testid=toast]")).to_have_text("Настройки бота сохранены")
    [settings] = table_rows(live_stack, "bot_settings")
    assert (settings["greeting"], settings["transfer_mode"], str(settings["queue_id"])) == (
        "Здравствуйте! Оператор скоро ответит.",
        "queue",
        second,
    )

    # The switch: off is stored for the portal, and the tab says what it means.
    switch = app.locator("[data-testid=bot-switch]")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(app.locator("[data-testid=bot-enabled]")).to_have_text("Выключен")
    assert [bool(s["enabled"]) for s in table_rows(live_stack, "bot_settings")] == [False]
    assert page.errors == []


def test_employees_have_no_dialogs_tab(live_stack, page):
    """The tab is for portal admins only; the API refuses an employee's session."""
    live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"})
    app = open_app(page, live_stack, user_id=2)
    expect(app.locator("[data-testid=greeting]")).to_contain_text("Мария")
    expect(app.locator("[data-testid=tab-dialogs]")).to_have_count(0)
    expect(app.locator("[data-testid=dialogs-tab]")).to_have_count(0)
    assert page.errors == []
