"""The OAuth code flow (/auth/bitrix24) over real HTTP against the sandbox portal and OAuth server."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from database import credentials, oauth_states
from tests.integration.helpers import boot_data, portal_info, table_rows


@pytest.fixture
def installed(live_stack):
    """portal1 with the app installed (ONAPPINSTALL), as the sandbox sees it."""
    result = live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result
    return portal_info(live_stack)


def start(stack, browser: requests.Session, domain: str) -> requests.Response:
    """Open the app's address outside the portal, naming the portal."""
    return browser.get(f"{stack.app_url}/auth/bitrix24", params={"portal": domain}, allow_redirects=False, timeout=30)


def consent(browser: requests.Session, started: requests.Response, user_id: int) -> str:
    """Go to the portal's consent page as `user_id` (a sandbox extra); returns the callback URL it redirects to."""
    answer = browser.get(f"{started.headers['Location']}&user_id={user_id}", allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def set_cookie_header(response: requests.Response, name: str) -> str:
    """The Set-Cookie header line of one cookie."""
    lines = [v for k, v in response.raw.headers.items() if k.lower() == "set-cookie" and v.startswith(f"{name}=")]
    assert len(lines) == 1, response.raw.headers
    return lines[0]


def test_code_flow_signs_the_user_in_and_shows_the_app_in_a_tab(live_stack, installed):
    browser = requests.Session()
    started = start(live_stack, browser, installed["domain"])
    assert started.status_code == 302
    target = urlsplit(started.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert (target.netloc, target.path) == (installed["domain"], "/oauth/authorize/")
    assert set(query) == {"client_id", "state"} and query["client_id"] == live_stack.env["BITRIX24_CLIENT_ID"]
    nonce_cookie = set_cookie_header(started, "bitrix24_oauth_nonce")
    assert "HttpOnly" in nonce_cookie and "SameSite=Lax" in nonce_cookie and "Path=/auth/bitrix24/" in nonce_cookie

    callback_url = consent(browser, started, user_id=2)
    back = urlsplit(callback_url)
    assert back.path == "/auth/bitrix24/callback" and parse_qs(back.query)["state"] == [query["state"]]
    signed_in = browser.get(callback_url, allow_redirects=False, timeout=30)
    assert signed_in.status_code == 303 and signed_in.headers["Location"].endswith("/auth/bitrix24/app")
    cookie = set_cookie_header(signed_in, "b24_web_session")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie, "a plain-HTTP loopback dev URL cannot keep a Secure cookie"

    page = browser.get(f"{live_stack.app_url}/auth/bitrix24/app", timeout=30)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    boot = boot_data(page.text)
    assert boot["user"] == {
        "id": 2,
        "name": "Мария Смирнова",
        "first_name": "Мария",
        "last_name": "Смирнова",
        "is_admin": False,
    }
    assert boot["portal"] == {"member_id": installed["member_id"], "domain": installed["domain"]}
    assert boot["session"] == "cookie"
    me = requests.get(
        f"{live_stack.app_url}/api/current-user", headers={"Authorization": f"Bearer {boot['token']}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["user"]["id"] == 2

    # The state row is spent, and the user's own pair from the exchanged code is kept.
    rows = table_rows(live_stack, oauth_states)
    assert len(rows) == 1 and rows[0]["used_at"] is not None
    assert [c["subject"] for c in table_rows(live_stack, credentials) if c["subject"] == "user:2"] == ["user:2"]

    # The tab renews its bearer token with the cookie; without it, or without a JSON body, nothing.
    renewed = browser.post(f"{live_stack.app_url}/api/session/cookie", json={}, timeout=10)
    assert renewed.status_code == 200
    claims = jwt.decode(renewed.json()["token"], options={"verify_signature": False})
    assert claims["sub"] == f"{installed['member_id']}:2"
    stranger = requests.post(f"{live_stack.app_url}/api/session/cookie", json={}, timeout=10)
    assert stranger.status_code == 401 and stranger.json()["error"] == "no_web_session"
    form_post = browser.post(f"{live_stack.app_url}/api/session/cookie", data={"a": "1"}, timeout=10)
    assert form_post.status_code == 400
    # A bearer token of the UI is not a session cookie.
    forged = requests.post(
        f"{live_stack.app_url}/api/session/cookie", json={}, cookies={"b24_web_session": boot["token"]}, timeout=10
    )
    assert forged.status_code == 401


def test_replayed_state_is_refused(live_stack, installed):
    browser = requests.Session()
    started = start(live_stack, browser, installed["domain"])
    nonce = browser.cookies.get("bitrix24_oauth_nonce")
    callback_url = consent(browser, started, user_id=1)
    assert browser.get(callback_url, allow_redirects=False, timeout=30).status_code == 303
    # The same browser (its nonce cookie kept) replays the callback: the state was spent.
    replayed = requests.get(callback_url, cookies={"bitrix24_oauth_nonce": nonce}, allow_redirects=False, timeout=30)
    assert replayed.status_code == 400
    assert "Этот вход уже использован." in replayed.text
    assert "b24_web_session" not in replayed.headers.get("Set-Cookie", "")
    rows = table_rows(live_stack, oauth_states)
    assert len(rows) == 1 and rows[0]["used_at"] is not None


def test_forged_state_is_refused_before_the_database(live_stack, installed):
    browser = requests.Session()
    callback_url = consent(browser, start(live_stack, browser, installed["domain"]), user_id=1)
    state = parse_qs(urlsplit(callback_url).query)["state"][0]
    forged = callback_url.replace(state, state[:-4] + ("0000" if not state.endswith("0000") else "1111"))
    refused = browser.get(forged, allow_redirects=False, timeout=30)
    assert refused.status_code == 400 and "Ссылка для входа недействительна." in refused.text
    assert table_rows(live_stack, oauth_states)[0]["used_at"] is None


def test_state_from_another_browser_is_refused(live_stack, installed):
    mine = requests.Session()
    callback_url = consent(mine, start(live_stack, mine, installed["domain"]), user_id=1)
    other = requests.get(callback_url, allow_redirects=False, timeout=30)
    assert other.status_code == 400
    assert "Вход был начат в другом браузере." in other.text
    assert "b24_web_session" not in other.headers.get("Set-Cookie", "")
    # The other browser did not burn the state, but the code it carried is single-use at the OAuth
    # server and was not exchanged either: the browser that started the flow still finishes it.
    assert table_rows(live_stack, oauth_states)[0]["used_at"] is None
    assert mine.get(callback_url, allow_redirects=False, timeout=30).status_code == 303


def test_portal_without_the_app_is_refused_with_a_readable_page(make_stack):
    stack = make_stack(portals=2)
    stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    bare = portal_info(stack, "portal2")  # a portal that never installed the app
    browser = requests.Session()
    refused = start(stack, browser, bare["domain"])
    assert refused.status_code == 404
    assert "Location" not in refused.headers and 'data-testid="error-page"' in refused.text
    assert f"Приложение не установлено на портале {bare['domain']}." in refused.text
    assert "bitrix24_oauth_nonce" not in browser.cookies
    assert table_rows(stack, oauth_states) == []
    english = browser.get(f"{stack.app_url}/auth/bitrix24", params={"portal": bare["domain"], "lang": "en"}, timeout=30)
    assert english.status_code == 404
    assert f"The application is not installed on the portal {bare['domain']}." in english.text
    bad_host = start(stack, browser, "10.0.0.1")
    assert bad_host.status_code == 400 and "Адрес портала не разрешён." in bad_host.text
    form = browser.get(f"{stack.app_url}/auth/bitrix24", timeout=30)
    assert form.status_code == 200 and 'data-testid="oauth-start"' in form.text


def test_app_page_without_a_session_goes_to_the_portal_form(live_stack):
    page = requests.get(f"{live_stack.app_url}/auth/bitrix24/app", allow_redirects=False, timeout=30)
    assert page.status_code == 303 and page.headers["Location"].endswith("/auth/bitrix24")
