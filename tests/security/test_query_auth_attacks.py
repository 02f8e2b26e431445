"""Issue 7 finding 11 (tokens in URLs), attacked harder: the installer page takes the same Bitrix24 auth as
the app page, so a link with AUTH_ID/REFRESH_ID/APPLICATION_TOKEN in its query must not install either:
the tokens would already sit in access logs and Referer headers."""

import pytest

SECRET = "7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", ["AUTH_ID", "REFRESH_ID", "APPLICATION_TOKEN"])
def test_installer_auth_in_the_query_string_is_refused(client, services, method, name):
    query = {
        "DOMAIN": "acme.bitrix24.ru",
        "PROTOCOL": "1",
        "lang": "en",
        "AUTH_ID": "a",
        "REFRESH_ID": "r",
        "APPLICATION_TOKEN": "t",
        "member_id": "m1",
        name: SECRET,
    }
    response = getattr(client, method)("/install", query_string=query)
    assert response.status_code == 400 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "sign-in data must not be sent in the page address" in page
    assert SECRET not in page
    assert services.portals.counts() == {}


def test_the_installer_form_in_the_body_is_still_verified(client):
    # What Bitrix24 sends: auth in the body, DOMAIN/PROTOCOL/LANG in the query; unknown tokens → the OAuth
    # server is asked (unreachable in this config): not refused up front.
    response = client.post(
        "/install",
        query_string={"DOMAIN": "acme.bitrix24.ru", "PROTOCOL": "1", "LANG": "en"},
        data={"AUTH_ID": SECRET, "REFRESH_ID": "r", "APPLICATION_TOKEN": "t", "member_id": "m1"},
    )
    assert response.status_code == 503
    assert SECRET not in response.get_data(as_text=True)
