"""Issue 7 finding 4, attacked harder: IP spellings the name check might still take, DNS answers that wrap an
internal IPv4 address in IPv6, and a portal that answers with a redirect to an internal address."""

import pytest

from models.bitrix24 import Bitrix24Unavailable
from models.hosts import InvalidHost, normalize_host, resolve_public


@pytest.mark.parametrize(
    "raw",
    [
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "2130706433.",
        "0x7f000001",
        "017700000001",
        "0x7F.1",
        "0.0.0.0",
        "0",
        "[::ffff:169.254.169.254]",
        "169.254.169.254.",
    ],
)
def test_ip_literals_in_any_spelling_are_no_portal_host(raw):
    for allow_loopback in (False, True):
        with pytest.raises(InvalidHost):
            normalize_host(raw, allow_loopback=allow_loopback)


@pytest.mark.parametrize("raw", ["127.0.0.1.", "localhost.", "LOCALHOST..", "[::1]."])
def test_a_trailing_dot_does_not_smuggle_loopback_into_production(raw):
    # The sandbox's loopback portals are allowed only by the development setting, however spelled.
    with pytest.raises(InvalidHost):
        normalize_host(raw)


@pytest.mark.parametrize(
    "internal",
    ["::127.0.0.1", "64:ff9b:1::a00:1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "::ffff:a9fe:a9fe", "100::1", "::"],
)
def test_ipv6_answers_that_wrap_or_hide_an_internal_address_refuse_the_name(fake_dns, internal):
    fake_dns.script("wrapped.example.com", [internal])
    with pytest.raises(InvalidHost):
        resolve_public("wrapped.example.com")


def test_a_portal_redirect_to_an_internal_address_is_not_followed(services, redirecting_portal, portal_server):
    """Even where loopback portals are allowed (the sandbox), a portal's 302 is an answer, not a new request."""
    redirecting_portal.target = f"http://127.0.0.1:{portal_server.port}/internal"

    with pytest.raises(Bitrix24Unavailable) as failed:
        services.portals.rest.call(
            f"http://127.0.0.1:{redirecting_portal.server_address[1]}/rest/", "t", "user.current"
        )

    assert failed.value.code == "bad_response"
    assert portal_server.requests == [], "the internal server must never see the request"
