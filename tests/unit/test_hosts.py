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
