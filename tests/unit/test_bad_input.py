"""Bad input is a 400 in the JSON error shape, never a 500 with a traceback in the log (issue 7, finding 9)."""

import logging

import pytest

LONE = "\\ud800"  # JSON text for a lone UTF-16 surrogate: valid JSON, not valid Unicode

SESSION = '{"member_id": "%s", "access_token": "%s", "domain": "acme.bitrix24.ru"}'
EVENT = '{"event": "ONAPPUPDATE", "auth": {"member_id": "%s", "application_token": "%s", "domain": "a.bitrix24.ru"}}'

CASES = [
    ("/api/session", SESSION % (LONE, "abc")),
    ("/api/session", SESSION % ("abc", LONE)),
    ("/api/session", (SESSION % ("abc", "abc"))[:-1] + f', "{LONE}": 1}}'),  # in a key
    ("/events", EVENT % (LONE, "abc")),
    ("/events", EVENT % ("abc", LONE)),
    ("/events", EVENT.replace("ONAPPUPDATE", "ONAPPINSTALL") % ("abc", LONE)),
    ("/events", EVENT.replace("ONAPPUPDATE", "ONAPPUNINSTALL") % (LONE, LONE)),
    ("/api/session", "[" * 200000),
    ("/events", "[" * 200000),
    ("/events", '{"a": ' * 100000 + "1" + "}" * 100000),
    ("/python_bot/", "[" * 200000),
]


def _no_traceback(caplog):
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


@pytest.mark.parametrize(("path", "body"), CASES, ids=range(len(CASES)))
def test_bad_json_is_400_without_a_traceback(client, caplog, path, body):
    caplog.set_level(logging.INFO)
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "bad_request", "message": "The request is malformed."}
    _no_traceback(caplog)


def test_bad_json_stores_nothing(client, services):
    response = client.post(
        "/events", data=EVENT.replace("ONAPPUPDATE", "ONAPPINSTALL") % (LONE, LONE), content_type="application/json"
    )
    assert response.status_code == 400
    assert services.portals.counts() == {}


@pytest.mark.parametrize("field", ["auth[member_id]", "auth[application_token]"])
def test_undecodable_form_fields_are_refused_not_crashed(client, caplog, field):
    # Bytes that are not UTF-8 (the CESU-8 form of a surrogate) in a Bitrix24 form post.
    caplog.set_level(logging.INFO)
    body = "event=ONAPPUPDATE&auth%5Bmember_id%5D=abc&auth%5Bapplication_token%5D=abc"
    body = body.replace(
        field.replace("[", "%5B").replace("]", "%5D") + "=abc",
        field.replace("[", "%5B").replace("]", "%5D") + "=%ED%A0%80",
    )
    response = client.post("/events", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 403
    assert response.get_json()["error"] == "bad_application_token"
    _no_traceback(caplog)


def test_lone_surrogates_are_found_anywhere():
    from routes.common import has_lone_surrogate

    assert has_lone_surrogate({"a": [{"b": ["ok", "\ud800"]}]})
    assert has_lone_surrogate({"\udfff": 1})
    assert not has_lone_surrogate({"a": ["ок", "😀", 1, None, {"b": "\u00e9"}]})


def test_form_items_refuse_surrogates(app):
    from werkzeug.datastructures import ImmutableMultiDict

    from routes.common import ApiError, form_items

    with app.test_request_context("/events", method="POST"):
        from flask import request

        # No WSGI server hands werkzeug such text today; the guard is for any parser that might.
        request.form = ImmutableMultiDict([("auth[member_id]", "\ud800")])
        with pytest.raises(ApiError) as refused:
            form_items()
    assert (refused.value.code, refused.value.status) == ("bad_request", 400)
