"""Issue 7 finding 9, attacked harder: every JSON route (the conferences API included) with bodies that are
not text, too deep or not numbers a parser takes, and numbers in URLs past what an id column holds (on
SQLite and on PostgreSQL). Always the JSON error shape, never a 500 or a traceback in the log."""

import logging

import pytest

JSON_ROUTES = [
    ("POST", "/api/session", "none"),
    ("POST", "/events", "none"),
    ("POST", "/python_bot/", "none"),
    ("POST", "/api/admin/amocrm/accounts", "admin"),
    ("POST", "/api/admin/amocrm/authorize", "admin"),
    ("POST", "/tasks/refresh", "cron"),
    ("POST", "/api/conferences", "bearer"),
    ("PUT", "/api/conferences/1", "bearer"),
    ("PATCH", "/api/conferences/1", "bearer"),
    ("POST", "/api/integrations/yandex/connect", "bearer"),
]
BAD_BODIES = {
    "lone_surrogate_value": '{"member_id": "\\ud800", "access_token": "a", "domain": "a.bitrix24.ru", '
    '"title": "\\ud800", "subdomain": "\\ud800", "auth": {"application_token": "\\ud800"}}',
    "lone_surrogate_key": '{"\\udfff": 1}',
    "deep_array": "[" * 200000,
    "deep_object": '{"a": ' * 50000 + "1" + "}" * 50000,
    "not_an_object": "[1, 2]",
    "integer_past_the_parser_limit": '{"expires_in": 1' + "0" * 5000 + "}",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.parametrize(("method", "path", "auth"), JSON_ROUTES, ids=[f"{m} {p}" for m, p, _ in JSON_ROUTES])
def test_bad_json_on_every_json_route_is_400(signed_in, caplog, method, path, auth, body):
    client, headers = signed_in
    with caplog.at_level(logging.ERROR):
        response = client.open(
            path,
            method=method,
            data=body.encode("utf-8", "surrogatepass"),
            headers={**headers[auth], "Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request" and set(response.get_json()) == {"error", "message"}
    assert "Traceback" not in caplog.text


ID_ROUTES = [("GET", ""), ("PUT", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/retry")]


@pytest.mark.parametrize("number", [2**31, 2**63, 10**26])
@pytest.mark.parametrize(("method", "suffix"), ID_ROUTES, ids=[f"{m}{s}" for m, s in ID_ROUTES])
def test_ids_past_an_integer_column_are_404_not_500(signed_in_any_db, caplog, method, suffix, number):
    client, headers = signed_in_any_db
    with caplog.at_level(logging.ERROR):
        response = client.open(f"/api/conferences/{number}{suffix}", method=method, json={}, headers=headers["bearer"])
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    assert "Traceback" not in caplog.text


def test_the_largest_id_a_column_holds_still_reaches_the_route(signed_in_any_db):
    client, headers = signed_in_any_db
    response = client.get(f"/api/conferences/{2**31 - 1}", headers=headers["bearer"])
    assert response.status_code == 404
    assert response.get_json()["error"] == "conference_not_found"


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/events", 403, "bad_application_token"),
        ("/python_bot/", 403, "bad_application_token"),
        ("/api/session", 400, "bad_request"),
    ],
)
def test_surrogate_bytes_in_form_fields_and_query_strings_are_refused_not_crashed(
    signed_in, caplog, path, status, error
):
    # %ED%A0%80 is U+D800 in UTF-8 form, which no decoder accepts; %FF is no UTF-8 at all.
    client, _headers = signed_in
    body = "event=ONAPPUNINSTALL&auth%5Bmember_id%5D=%ED%A0%80&auth%5Bapplication_token%5D=%FF&data%5BCLEAN%5D=1"
    with caplog.at_level(logging.ERROR):
        in_form = client.post(path, data=body, content_type="application/x-www-form-urlencoded")
        in_query = client.post(f"{path}?{body}")
    assert (in_form.status_code, in_form.get_json()["error"]) == (status, error)
    assert (in_query.status_code, in_query.get_json()["error"]) == (status, error)
    assert "Traceback" not in caplog.text
