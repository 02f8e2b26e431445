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
        "", None, "localhost", "127.0.0.1", "10.0.0.5", "192.168.1.1", "[::1]", "169.254.169.254",
        "acme.bitrix24.com:8443", "https://acme.bitrix24.com", "acme.bitrix24.com/rest", "user@acme.bitrix24.com",
        "acme", "-bad-.com", "a..b.com", "acme.bitrix24.com?x=1", "foo.localhost", "1.2.3.4.5", "a b.com",
        "acme%2ebitrix24.com", "x" * 300 + ".com",
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
    ["http://acme.bitrix24.com/rest/", "https://u:p@acme.bitrix24.com/rest/", "https://10.0.0.1/rest/",
     "https://acme.bitrix24.com/rest/?a=1", "ftp://acme.bitrix24.com/", ""],
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
