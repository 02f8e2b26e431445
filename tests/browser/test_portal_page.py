"""The app inside the sandbox portal's iframe, end to end: frame SDK handshake, session, installer."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# b24parent.js keeps the names of the frame commands it received here; sessionStorage survives the
# portal page reload that follows installFinish.
COMMAND_LOG = "JSON.parse(sessionStorage.getItem('b24parent.commands') || '[]')"


def portal_name(live_stack) -> str:
    """Name of the sandbox's first portal (portal1)."""
    return live_stack.sandbox["portals"][0]["name"]


def open_portal(page, live_stack, portal: str, user_id: int) -> None:
    """Open the sandbox portal page with the app frame as the given user."""
    page.goto(f"{live_stack.sandbox['base']}/_sandbox/portals/{portal}/open?user_id={user_id}")


def test_app_greets_the_opening_user_inside_the_portal_frame(live_stack, page, artifacts):
    """An installed app opened by user 2 greets Мария, who comes from the verified frame POST."""
    portal = portal_name(live_stack)
    live_stack.control("POST", f"/_sandbox/portals/{portal}/install", {"mode": "event"})

    open_portal(page, live_stack, portal, user_id=2)
    app = page.frame_locator("#app-frame")

    expect(app.locator("[data-testid=greeting]")).to_contain_text("Мария")
    expect(app.locator("[data-testid=conferences]")).to_be_visible()
    expect(app.locator("[data-testid=integrations]")).to_have_count(0)  # user 2 is not an admin
    # The SDK initialised against the portal (getInitData) and sized the frame (fitWindow).
    page.wait_for_function(f"{COMMAND_LOG}.includes('resizeWindow')")
    assert page.evaluate(COMMAND_LOG)[0] == "getInitData"
    page.screenshot(path=str(artifacts / "portal.png"), full_page=True)
    assert page.errors == []


def test_installer_finishes_install_and_portal_reloads_into_the_app(live_stack, page, artifacts):
    """Installer mode: the admin sees the installer, it calls installFinish, the portal reloads the app."""
    portal = portal_name(live_stack)
    live_stack.control("POST", f"/_sandbox/portals/{portal}/install", {"mode": "installer"})

    open_portal(page, live_stack, portal, user_id=1)
    app = page.frame_locator("#app-frame")

    # The reloaded app greets from its verified boot data, which can render before its SDK asks the portal for
    # getInitData: wait for that command after installFinish instead of reading the log once the greeting shows.
    page.wait_for_function(
        f"(() => {{ const c = {COMMAND_LOG}; const i = c.indexOf('setInstallFinish');"
        " return i >= 0 && c.slice(i + 1).includes('getInitData'); })()"
    )
    expect(app.locator("[data-testid=greeting]")).to_contain_text("Иван")
    commands = page.evaluate(COMMAND_LOG)
    assert commands.count("setInstallFinish") == 1
    app.locator("[data-testid=tab-settings]").click()  # user 1 is the portal admin: the Settings tab is there
    expect(app.locator("[data-testid=integrations]")).to_be_visible()
    page.screenshot(path=str(artifacts / "portal-after-install.png"), full_page=True)
    assert page.errors == []


def test_frame_follows_the_content_both_ways(live_stack, page):
    """The portal frame grows when the create form opens and shrinks back when it closes (fitWindow alone can't)."""
    portal = portal_name(live_stack)
    live_stack.control("POST", f"/_sandbox/portals/{portal}/install", {"mode": "event"})
    open_portal(page, live_stack, portal, user_id=2)
    app = page.frame_locator("#app-frame")
    frame = page.locator("#app-frame")
    expect(app.locator("[data-testid=conference-new]")).to_be_visible()
    page.wait_for_timeout(500)  # let the first fit land
    frame_height = "document.getElementById('app-frame').getBoundingClientRect().height"
    before = frame.evaluate("node => node.getBoundingClientRect().height")
    app.locator("[data-testid=conference-new]").click()
    expect(app.locator("[data-testid=conference-form]")).to_be_visible()
    page.wait_for_function(f"h => {frame_height} > h + 300", arg=before)
    app.locator("[data-testid=conference-form] button.btn-light", has_text="Отмена").click()
    page.wait_for_function(f"h => {frame_height} < h + 50", arg=before)
    assert page.errors == []
