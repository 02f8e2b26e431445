"""PHP bracket-key parsing of Bitrix24 form posts, checked on the documentation's payloads."""

import pytest

from models.forms import MalformedForm, integer, text, unflatten
from tests.conftest import load_fixture


def test_onappinstall_fixture_unflattens():
    payload = load_fixture("event-ONAPPINSTALL.json")["payload"]
    data = unflatten(payload.items())
    assert data["event"] == "ONAPPINSTALL"
    assert data["auth"]["member_id"] == "a223c6b3710f85df22e9377d6c4f7553"
    assert data["auth"]["client_endpoint"] == "https://some-domain.bitrix24.com/rest/"
    assert data["data"]["VERSION"] == "1.0.0"
    assert integer(data["auth"], "expires_in") == 3600


@pytest.mark.parametrize("name", ["event-ONIMBOTJOINCHAT-group.json", "event-ONIMBOTMESSAGEADD-private.json"])
def test_deep_bot_events_unflatten(name):
    payload = load_fixture(name)["payload"]
    data = unflatten(payload.items())
    assert data["event"].startswith("ONIMBOT")
    assert isinstance(data["data"]["BOT"], dict)
    assert "application_token" in data["auth"]


def test_openlines_dump_without_envelope_unflattens():
    # The only official Open Lines example is the data[] part alone (fixture notes): no event, no auth.
    data = unflatten(load_fixture("event-ONIMBOTMESSAGEADD-openlines.json")["payload"].items())
    assert "event" not in data
    assert data["data"]["PARAMS"]["CHAT_ENTITY_TYPE"] == "LINES"
    assert data["data"]["BOT"]["39"]["BOT_ID"] == "39"


def test_first_value_wins_and_conflicts_are_malformed():
    assert unflatten([("a[b]", "1"), ("a[b]", "2")]) == {"a": {"b": "1"}}
    with pytest.raises(MalformedForm):
        unflatten([("a", "1"), ("a[b]", "2")])
    with pytest.raises(MalformedForm):
        unflatten([("a[b]", "1"), ("a", "2")])
    with pytest.raises(MalformedForm):
        unflatten([("a" + "[x]" * 20, "1")])


def test_field_helpers():
    assert text({"a": " x "}, "a") == "x"
    assert text({"a": {"b": 1}}, "a") == ""
    assert text({"a": "y" * 600}, "a") == ""
    assert integer({"a": "12"}, "a") == 12
    assert integer({"a": "x"}, "a", 5) == 5


FORM_BODIES = [
    "a=1&&b=&c&e+f=g+h&k=%E2%82%AC&=v&x==y&m=%&n=%zz",
    "auth%5Bmember_id%5D=%ED%A0%80&auth%5Bapplication_token%5D=abc",  # not UTF-8 once unquoted: kept as text
    "a%5Bb%5D%5Bc%5D=1;b=2",
    "",
]


@pytest.mark.parametrize("body", FORM_BODIES, ids=range(len(FORM_BODIES)))
def test_fast_form_parser_reads_what_werkzeug_reads(body):
    from urllib.parse import parse_qsl

    import werkzeug.urls  # noqa: F401 - registers the error handler werkzeug's form parser uses

    from models.forms import parse_urlencoded

    expected = parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote")
    assert parse_urlencoded(body.encode()) == expected


def test_fast_form_parser_reads_the_bitrix24_event():
    from urllib.parse import urlencode

    from models.forms import parse_urlencoded

    payload = load_fixture("event-ONIMBOTMESSAGEADD-openlines.json")["payload"]
    assert unflatten(parse_urlencoded(urlencode(payload).encode())) == unflatten(payload.items())


def test_fast_form_parser_refuses_a_body_that_is_not_utf8():
    from models.forms import parse_urlencoded

    with pytest.raises(UnicodeDecodeError):
        parse_urlencoded(b"a=\xff")
