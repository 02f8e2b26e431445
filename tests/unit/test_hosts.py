"""Portal host and endpoint validation."""

import pytest

from models.hosts import InvalidHost, normalize_endpoint, normalize_host


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.bitrix24.com", "acme.bitrix24.com"),
        ("  ACME.Bitrix24.RU. ", "acme.bitrix24.ru"),
        ("портал.рф", "xn--80awhdgm.xn--p1ai"),
        ("компания.bitrix24.ru", "xn--80aqeigdi5k.bitrix24.ru"),
    ],
)
def test_valid_hosts_are_normalised(raw, expected):
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        None,
        "localhost",
        "127.0.0.1",
        "10.0.0.5",
        "192.168.1.1",
        "[::1]",
        "169.254.169.254",
        "acme.bitrix24.com:8443",
        "https://acme.bitrix24.com",
        "acme.bitrix24.com/rest",
        "user@acme.bitrix24.com",
        "acme",
        "-bad-.com",
        "a..b.com",
        "acme.bitrix24.com?x=1",
        "foo.localhost",
        "1.2.3.4.5",
        "a b.com",
        "acme%2ebitrix24.com",
        "x" * 300 + ".com",
    ],
)
def test_bad_hosts_are_refused(raw):
    with pytest.raises(InvalidHost):
        normalize_host(raw)


def test_loopback_only_when_allowed():
    with pytest.raises(InvalidHost):
        normalize_host("127.0.0.1:8080")
    assert normalize_host("127.0.0.1:8080", allow_loopback=True) == "127.0.0.1:8080"
    assert normalize_host("localhost", allow_loopback=True) == "localhost"
    # Loopback mode does not open the door to private ranges.
    with pytest.raises(InvalidHost):
        normalize_host("10.1.2.3:80", allow_loopback=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://acme.bitrix24.com/rest/", "https://acme.bitrix24.com/rest/"),
        ("https://acme.bitrix24.com/rest", "https://acme.bitrix24.com/rest/"),
    ],
)
def test_endpoints(raw, expected):
    assert normalize_endpoint(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://acme.bitrix24.com/rest/",
        "https://u:p@acme.bitrix24.com/rest/",
        "https://10.0.0.1/rest/",
        "https://acme.bitrix24.com/rest/?a=1",
        "ftp://acme.bitrix24.com/",
        "",
    ],
)
def test_bad_endpoints(raw):
    with pytest.raises(InvalidHost):
        normalize_endpoint(raw)


def test_loopback_endpoint_may_be_http_in_dev():
    assert normalize_endpoint("http://127.0.0.1:5001/rest/", allow_loopback=True) == "http://127.0.0.1:5001/rest/"


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.20", "169.254.169.254", "127.0.0.1", "localhost", "::1"])
def test_names_or_addresses_leading_inside_are_refused_at_call_time(host):
    from models.hosts import assert_public_address

    with pytest.raises(InvalidHost):
        assert_public_address(host)


def test_public_addresses_and_sandbox_loopback_pass():
    from models.hosts import assert_public_address

    assert_public_address("8.8.8.8")  # numeric: no DNS needed
    assert_public_address("127.0.0.1", allow_loopback=True)
    assert_public_address("localhost", allow_loopback=True)
    with pytest.raises(InvalidHost):
        assert_public_address("10.0.0.1", allow_loopback=True)


def test_rest_calls_refuse_private_portal_addresses(services):
    from models.bitrix24 import Bitrix24Error, Bitrix24Rest

    rest = Bitrix24Rest(services.portals.rest.session, 2.0, allow_loopback=False)
    with pytest.raises(Bitrix24Error) as refused:
        rest.call("https://10.1.2.3/rest/", "token", "user.current")
    assert refused.value.code == "PORTAL_ADDRESS_REFUSED"


# ---- finding 4: IP spellings, one resolution per request, connection pinned to the checked address ----


@pytest.mark.parametrize(
    "raw",
    [
        "0x7f.0x1",
        "0x7f.0.0.0x1",
        "0xa9.0xfe.0xa9.0xfe",
        "0177.0.0.1",
        "127.1",
        "10.1",
        "0x0a000001",
        "2130706433",
        "1.2.3",
        "０x7f.０x1",
        "::1",
        "::ffff:127.0.0.1",
        "[2001:db8::1]",
        "2001:4860:4860::8888",
    ],
)
def test_every_ip_spelling_the_resolver_accepts_is_refused(raw):
    with pytest.raises(InvalidHost):
        normalize_host(raw)
    if raw != "::1":  # the sandbox's own loopback literal is the one IP the development setting allows
        with pytest.raises(InvalidHost):
            normalize_host(raw, allow_loopback=True)


@pytest.mark.parametrize("raw", ["0x7f.0x1", "0xa9.0xfe.0xa9.0xfe"])
def test_hex_ip_endpoints_are_refused(raw):
    with pytest.raises(InvalidHost):
        normalize_endpoint(f"https://{raw}/rest/", allow_loopback=True)


def test_names_that_only_look_numeric_stay_valid():
    assert normalize_host("0x7f.1.example.com") == "0x7f.1.example.com"
    assert normalize_host("deadbeef.com") == "deadbeef.com"


@pytest.mark.parametrize(
    "internal",
    [
        "10.0.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "240.0.0.1",
        "0.0.0.0",
        "198.18.0.1",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a00:1",
        "ff02::1",
        "127.0.0.1",
    ],
)
def test_one_internal_address_among_public_ones_refuses_the_name(fake_dns, internal):
    from models.hosts import resolve_public

    fake_dns.script("mixed.example.com", ["93.184.216.34", internal])
    with pytest.raises(InvalidHost):
        resolve_public("mixed.example.com")


def test_loopback_passes_only_when_allowed_and_private_never(fake_dns):
    from models.hosts import resolve_public

    fake_dns.script("sandbox.example.com", ["127.0.0.1", "::1"])
    assert resolve_public("sandbox.example.com", allow_loopback=True) == "127.0.0.1"
    with pytest.raises(InvalidHost):
        resolve_public("sandbox.example.com")
    fake_dns.script("lan.example.com", ["127.0.0.1", "192.168.0.10"])
    with pytest.raises(InvalidHost):
        resolve_public("lan.example.com", allow_loopback=True)


def test_a_name_that_passed_is_not_trusted_on_the_next_call(fake_dns):
    from models.hosts import resolve_public

    fake_dns.script("flip.example.com", ["93.184.216.34"], ["10.0.0.7"])
    assert resolve_public("flip.example.com") == "93.184.216.34"
    with pytest.raises(InvalidHost):
        resolve_public("flip.example.com")
    assert fake_dns.lookups["flip.example.com"] == 2


def test_rebinding_between_check_and_connect_cannot_reach_loopback(
    strict_services, fake_dns, portal_server, monkeypatch
):
    """DNS answers public for the check and 127.0.0.1 afterwards: the connect goes to the checked address."""
    import urllib3.util.connection

    from models.bitrix24 import Bitrix24Unavailable

    real_connect = urllib3.util.connection.create_connection
    connects = []

    def recording_connect(address, *args, **kwargs):
        connects.append(address)
        if address[0] == "93.184.216.34":
            raise OSError("no internet in tests")  # the validated public address: nothing to reach here
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", recording_connect)
    fake_dns.script("rebind.example.com", ["93.184.216.34"], ["127.0.0.1"])
    with pytest.raises(Bitrix24Unavailable):
        strict_services.portals.rest.call(f"http://rebind.example.com:{portal_server.port}/rest/", "t", "user.current")
    assert connects == [("93.184.216.34", portal_server.port)]
    assert fake_dns.lookups["rebind.example.com"] == 1
    assert portal_server.requests == [], "the internal server must never see the request"


def test_portal_rest_refuses_a_name_leading_inside(strict_services, fake_dns, portal_server):
    from models.bitrix24 import Bitrix24Error

    fake_dns.script("inside.example.com", ["127.0.0.1"])
    with pytest.raises(Bitrix24Error) as refused:
        strict_services.portals.rest.call(f"http://inside.example.com:{portal_server.port}/rest/", "t", "user.current")
    assert refused.value.code == "PORTAL_ADDRESS_REFUSED"
    assert portal_server.requests == []


def test_pinned_https_keeps_host_header_sni_and_certificate_name(fake_dns, tls_portal_server):
    """Allowed loopback (the sandbox case): connected by address, yet TLS and Host speak the portal's name."""
    from models.bitrix24 import Bitrix24Rest
    from models.http import portal_session

    fake_dns.script("portal.test", ["127.0.0.1"])
    session = portal_session(4, allow_loopback=True)
    session.verify = tls_portal_server.ca_file
    rest = Bitrix24Rest(session, 5.0)
    port = tls_portal_server.port
    assert rest.call(f"https://portal.test:{port}/rest/", "t", "user.current").result == {"ID": "1"}
    assert tls_portal_server.server_names == ["portal.test"]
    assert [(r["path"], r["host"]) for r in tls_portal_server.requests] == [
        ("/rest/user.current", f"portal.test:{port}")
    ]
    assert fake_dns.lookups["portal.test"] == 1


def test_pinned_https_still_checks_the_certificate_against_the_name(fake_dns, tls_portal_server):
    from models.bitrix24 import Bitrix24Rest, Bitrix24Unavailable
    from models.http import portal_session

    fake_dns.script("other.test", ["127.0.0.1"])
    session = portal_session(4, allow_loopback=True)
    session.verify = tls_portal_server.ca_file
    with pytest.raises(Bitrix24Unavailable):
        Bitrix24Rest(session, 5.0).call(f"https://other.test:{tls_portal_server.port}/rest/", "t", "user.current")
    assert tls_portal_server.server_names == ["other.test"]
    assert tls_portal_server.requests == []


def test_plain_http_loopback_keeps_the_host_header(fake_dns, portal_server):
    from models.bitrix24 import Bitrix24Rest
    from models.http import portal_session

    fake_dns.script("sandbox.test", ["127.0.0.1"])
    rest = Bitrix24Rest(portal_session(4, allow_loopback=True), 5.0)
    rest.call(f"http://sandbox.test:{portal_server.port}/rest/", "t", "user.current")
    assert portal_server.requests[0]["host"] == f"sandbox.test:{portal_server.port}"


def test_the_next_checked_address_is_tried_only_when_the_first_took_no_connection(fake_dns, portal_server, monkeypatch):
    import urllib3.util.connection

    from models.bitrix24 import Bitrix24Rest
    from models.http import portal_session

    real_connect = urllib3.util.connection.create_connection
    connects = []

    def recording_connect(address, *args, **kwargs):
        connects.append(address[0])
        if address[0] == "93.184.216.34":
            raise ConnectionRefusedError("unreachable in tests")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", recording_connect)
    fake_dns.script("two.test", ["93.184.216.34", "127.0.0.1"])
    rest = Bitrix24Rest(portal_session(4, allow_loopback=True), 5.0)
    assert rest.call(f"http://two.test:{portal_server.port}/rest/", "t", "user.current").result == {"ID": "1"}
    assert connects == ["93.184.216.34", "127.0.0.1"]
    assert len(portal_server.requests) == 1
    assert fake_dns.lookups["two.test"] == 1
