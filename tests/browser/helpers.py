"""Steps the browser tests share: opening the app in the sandbox portal, connecting Yandex, reading the portal."""

from __future__ import annotations

import importlib.util
import re

import pytest
import requests
from playwright.sync_api import expect

from tests.integration.helpers import mint

CYRILLIC = re.compile(r"[\u0400-\u04FF]")

# Text of the app frame without what is data rather than UI: elements marked translate="no" (names, line names,
# messages) are left out.
UI_TEXT = """() => {
  const copy = document.body.cloneNode(true)
  copy.querySelectorAll('[translate=no], script, style, noscript').forEach((node) => node.remove())
  return copy.innerText
}"""


def needs_backend(module: str, what: str):
    """Skip until the backend branch that brings `module` is merged (never once it is there)."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{what} not merged yet ({module})")


def open_app(page, stack, user_id: int, portal: str = "portal1"):
    """The sandbox portal page with the app frame, opened as `user_id`; returns the frame locator."""
    page.goto(f"{stack.sandbox['base']}/_sandbox/portals/{portal}/open?user_id={user_id}")
    return page.frame_locator("#app-frame")


def open_app_in(page, stack, lang: str, user_id: int):
    """The app opened with the portal's LANG set to `lang` (the sandbox always posts LANG=ru)."""

    def rewrite(route):
        route.continue_(url=re.sub(r"([?&])LANG=[^&]*", rf"\1LANG={lang}", route.request.url))

    page.route(re.compile(r".*[?&]LANG=ru.*"), rewrite)
    return open_app(page, stack, user_id)


def app_frame(page):
    """The app's Frame (for evaluate); look it up again after every navigation."""
    return page.locator("#app-frame").element_handle().content_frame()


def portal_users(stack, ids: list[int], portal: str = "portal1") -> dict[int, dict]:
    """The sandbox portal's users by id (user.get through its REST API, as the app sees them)."""
    tokens = mint(stack, portal=portal, user_id=1)
    answer = requests.post(
        f"{tokens['client_endpoint']}user.get",
        timeout=10,
        json={"auth": tokens["access_token"], "FILTER": {"@ID": ids}},
    )
    answer.raise_for_status()
    return {int(user["ID"]): user for user in answer.json()["result"]}


def portal_state(stack, portal: str = "portal1") -> dict:
    """What the app changed on the sandbox portal (calendar events, notifications, messages, lines…)."""
    return stack.control("GET", f"/_sandbox/portals/{portal}/state", expect=200)


def portal_calls(stack, portal: str = "portal1") -> list[str]:
    """Names of the REST methods the app called on the portal, batch sub-calls included, in order."""
    return [call["method"] for call in stack.control("GET", f"/_sandbox/portals/{portal}/calls", expect=200)]


def connect_portal_yandex(page, stack) -> None:
    """As the portal admin, connect the sandbox's Yandex account to portal1 through the Settings tab's popup."""
    app = open_app(page, stack, user_id=1)
    app.locator("[data-testid=tab-settings]").click()
    expect(app.locator("[data-testid=yandex-status]")).to_be_visible()
    with page.expect_popup() as popup_info:
        app.locator("[data-testid=connect-yandex]").click()
    popup = popup_info.value
    # The connect window says which portal and user the account goes to, and waits for "Connect".
    popup.locator("[data-testid=connect-button]").click()
    expect(popup.locator("[data-testid=result-page]")).to_be_visible()
    popup.wait_for_event("close", timeout=10_000)
    expect(app.locator("[data-testid=yandex-account]")).not_to_be_empty()
