"""Issue 7 finding 8, attacked harder: secret names spelled every way a server or a client may spell them,
header lines in any case, and secrets inside a URL carried percent-encoded in another field's value."""

import logging

import pytest

SECRET = "k3m9x2q8w7e1r5t6y4u0i9o8p7a6s5d4"

SPELLINGS = [
    f"GET /api/admin/status?%2574oken={SECRET} HTTP/1.1",  # double-encoded: one more decoder away
    f"GET /api/admin/status?ToKeN={SECRET} HTTP/1.1",
    f"GET /api/admin/status?%54%4F%4B%45%4E={SECRET} HTTP/1.1",
    f"GET /api/admin/status?%74%6f%6b%65%6e={SECRET} HTTP/1.1",
    f"POST /events auth%255Baccess_token%255D={SECRET}",
    f"POST /events AUTH%5BAPPLICATION_TOKEN%5D={SECRET}",
    f"GET /?auth_id={SECRET}&DOMAIN=x",
    f"GET /?x=1&Refresh_Id={SECRET}",
    f"GET /auth/amocrm/callback?CODE={SECRET}&state=y",
    f"GET /auth/yandex/start?Ticket={SECRET}",
    f"x-cron-token: {SECRET}",
    f"X-API-TOKEN: {SECRET}",
    f"headers={{'x-api-token': '{SECRET}'}}",
    f"authorization: bearer {SECRET}",
    f"AUTHORIZATION: OAuth {SECRET}",
    # A URL carried inside a value (a Referer, a redirect target): the secret is one decoding away.
    f"GET /x?next=%2Fapi%2Fadmin%2Fstatus%3Ftoken%3D{SECRET} HTTP/1.1",
    f"GET /x?redirect=https%253A%252F%252Fa.example%252F%253FAUTH_ID%253D{SECRET} HTTP/1.1",
]


@pytest.mark.parametrize("line", SPELLINGS)
def test_every_spelling_of_a_secret_is_redacted(root_log, line):
    logging.getLogger("tests.security").warning("request %s", line)
    text = root_log.getvalue()
    assert SECRET not in text
    assert "[REDACTED]" in text


@pytest.mark.parametrize(
    "line",
    [
        "GET /x?next=%2Fapi%2Fconferences%3Fpage%3D2 HTTP/1.1",
        "GET /api/admin/tokens/bitrix24/abc123 HTTP/1.1",
        "authorization failed for member_id=abc",
    ],
)
def test_harmless_encoded_values_are_kept(root_log, line):
    logging.getLogger("tests.security").warning("request %s", line)
    assert line in root_log.getvalue()
