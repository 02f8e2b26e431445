"""The Bitrix24 REST client and the Telemost client on their own, against the sandbox (and a fake clock)."""

from __future__ import annotations

import pytest
import requests

from models.bitrix24 import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24Error,
    Bitrix24MethodNotFound,
    Bitrix24PaymentRequired,
    Bitrix24PortalDeleted,
    Bitrix24RateLimited,
    Bitrix24Rest,
    Bitrix24ServerError,
    Pacer,
    command_errors,
    error_for,
)
from models.telemost import (
    DELETE_UNSUPPORTED,
    DELETED,
    OrganizerToken,
    TelemostApi,
    TelemostClient,
    TelemostError,
)
from tests.conftest import load_fixture


@pytest.fixture
def portal_client(world):
    """A PortalClient of the portal credential (admin, user 1) of a fresh sandbox portal."""
    portal_id = world.install("portal1")
    portal = world.services.portals.get(portal_id)
    return world.services.portals.client(portal)


# ---- Bitrix24 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("expired_token", Bitrix24AuthError),
        ("invalid_token", Bitrix24AuthError),
        ("NO_AUTH_FOUND", Bitrix24AuthError),
        ("insufficient_scope", Bitrix24AccessDenied),
        ("ACCESS_DENIED", Bitrix24AccessDenied),
        ("WRONG_AUTH_TYPE", Bitrix24AccessDenied),
        ("QUERY_LIMIT_EXCEEDED", Bitrix24RateLimited),
        ("OPERATION_TIME_LIMIT", Bitrix24RateLimited),
        ("OVERLOAD_LIMIT", Bitrix24RateLimited),
        ("PAYMENT_REQUIRED", Bitrix24PaymentRequired),
        ("INVALID_REQUEST", Bitrix24BadRequest),
        ("ERROR_BATCH_LENGTH_EXCEEDED", Bitrix24BadRequest),
        ("ERROR_METHOD_NOT_FOUND", Bitrix24MethodNotFound),
        ("INTERNAL_SERVER_ERROR", Bitrix24ServerError),
        ("PORTAL_DELETED", Bitrix24PortalDeleted),
    ],
)
def test_system_errors_are_typed(code, kind):
    error = error_for(code, "text", 401)
    assert type(error) is kind and isinstance(error, Bitrix24Error)
    assert (error.code, error.description, error.status) == (code, "text", 401)
    assert type(error_for("USER_ID_EMPTY")) is Bitrix24Error


def test_batch_with_result_references_and_per_command_errors(portal_client):
    request = load_fixture("rest-batch-request.json")["payload"]
    assert "$result[get_user]" in request["cmd"]["get_department"]  # the documented reference syntax
    answer = portal_client.batch(
        {
            "me": ("user.current", {}),
            "same": ("user.get", {"FILTER": {"ID": "$result[me][ID]"}}),
            "bad": ("im.notify.system.add", {"USER_ID": 0, "MESSAGE": "x"}),
        }
    )
    assert answer["result"]["me"]["ID"] == "1"
    assert [u["ID"] for u in answer["result"]["same"]] == ["1"]
    assert answer["result_total"] == {"same": 1}
    errors = command_errors(answer)
    assert list(errors) == ["bad"] and errors["bad"].code == "USER_ID_EMPTY"


def test_batch_halt_stops_at_the_first_error(portal_client):
    answer = portal_client.batch(
        {"bad": ("im.notify.system.add", {"USER_ID": 0, "MESSAGE": "x"}), "me": ("user.current", {})}, halt=True
    )
    assert answer["result"] == {} and list(answer["result_error"]) == ["bad"]
    with pytest.raises(ValueError):
        portal_client.batch({str(i): ("user.current", {}) for i in range(51)})


def test_command_errors_read_the_documented_shapes():
    halt0 = load_fixture("rest-batch-error-halt0.json")["payload"]["result"]
    errors = command_errors(halt0)
    assert {k: type(v) for k, v in errors.items()} == {
        "get_user": Bitrix24AccessDenied,
        "get_department": Bitrix24AccessDenied,
    }
    assert command_errors(load_fixture("rest-batch.json")["payload"]["result"]) == {}


def test_list_paging_follows_next(portal_client):
    first = portal_client.list_page("user.get", {"FILTER": {"ACTIVE": True}})
    assert (len(first.result), first.total, first.next) == (50, 59, 50)
    everyone = portal_client.list_all("user.get", {"FILTER": {"ACTIVE": True}})
    assert len(everyone) == 59 and len({u["ID"] for u in everyone}) == 59


def test_query_limit_is_backed_off_and_typed(world, control, portal_client):
    name = control.portal("portal1")["name"]
    control("POST", f"/portals/{name}/limits", {"bucket": 1, "drain": 1000})
    control.fault(server="portal", mode="503", count=2, portal=name)
    slept = []
    portal_client.rest._sleep = slept.append
    assert portal_client.call("user.current").result["ID"] == "1"
    assert len(slept) == 2 and slept[1] > slept[0]
    control.fault(server="portal", mode="503", count=10, portal=name)
    with pytest.raises(Bitrix24RateLimited) as refused:
        portal_client.call("user.current")
    assert refused.value.code == "QUERY_LIMIT_EXCEEDED" and len(slept) == 5


def test_method_errors_arrive_typed_over_http(portal_client):
    with pytest.raises(Bitrix24MethodNotFound):
        portal_client.call("no.such.method")
    with pytest.raises(Bitrix24Error) as calendar:
        portal_client.call("calendar.event.add", {"type": "user", "ownerId": 1})
    assert calendar.value.code == "ERROR" and calendar.value.status == 400  # calendar errors come with error ""
    assert type(calendar.value) is Bitrix24Error


def test_pacer_keeps_a_burst_under_the_bucket():
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    pacer = Pacer(drain=2.0, burst=50, clock=lambda: clock[0], sleep=sleep)
    for _ in range(50):
        assert pacer.wait("portal.example") == 0
    assert pacer.wait("portal.example") == pytest.approx(0.5)
    assert pacer.wait("other.example") == 0  # one bucket per portal
    clock[0] += 100
    assert pacer.wait("portal.example") == 0


def test_rest_client_waits_for_the_pacer_before_calling():
    waited = []

    class Recorder(Pacer):
        def wait(self, key):
            waited.append(key)
            return 0.0

    rest = Bitrix24Rest(requests.Session(), 1.0, allow_loopback=True, pacer=Recorder())
    with pytest.raises(Bitrix24Error):
        rest.call("http://127.0.0.1:9/rest/", "token", "user.current")
    assert waited == ["127.0.0.1:9"]


# ---- Telemost ------------------------------------------------------------------------------------------


@pytest.fixture
def telemost(world, control):
    """A Telemost client for an organisation account of the sandbox's Yandex OAuth."""
    pair = control.mint("yandex", login="boss@corp.example")
    api = TelemostApi(requests.Session(), control.info["telemost"], 5.0, backoff=0.01)
    return TelemostClient(api, OrganizerToken(pair["access_token"], None, "boss@corp.example", personal=False))


def test_conference_lifecycle_and_cohosts(telemost, control):
    meeting = telemost.create(
        waiting_room_level="ORGANIZATION",
        cohosts=["a@corp.example"],
        live_stream={"title": "T", "description": "D", "access_level": "PUBLIC"},
    )
    assert meeting.watch_url and meeting.join_url.endswith(meeting.id)
    got = telemost.get(meeting.id)
    assert got.waiting_room_level == "ORGANIZATION" and got.live_stream["title"] == "T"
    updated = telemost.update(meeting.id, waiting_room_level="ADMINS", live_stream={"title": "T2"})
    assert updated.waiting_room_level == "ADMINS" and updated.live_stream["title"] == "T2"
    assert telemost.update(meeting.id) is None
    telemost.add_cohosts(meeting.id, ["b@corp.example"])
    assert telemost.cohosts(meeting.id) == ["a@corp.example", "b@corp.example"]
    telemost.remove_cohosts(meeting.id, ["a@corp.example"])
    telemost.replace_cohosts(meeting.id, ["c@corp.example", "d@corp.example"])
    assert telemost.cohosts(meeting.id) == ["c@corp.example", "d@corp.example"]
    assert control.meetings()[0]["cohosts"] == ["c@corp.example", "d@corp.example"]


@pytest.mark.parametrize(
    ("knob", "outcome"), [("204", DELETED), ("405", DELETE_UNSUPPORTED), ("404", DELETE_UNSUPPORTED)]
)
def test_delete_where_the_api_allows_it(telemost, control, knob, outcome):
    meeting = telemost.create()
    control.configure(telemost_delete=knob)
    assert telemost.delete(meeting.id) == outcome
    assert control.meetings()[0]["deleted"] is (knob == "204")


def test_errors_keep_yandex_request_id(telemost, control):
    with pytest.raises(TelemostError) as missing:
        telemost.get("123456789012")
    assert missing.value.code == "telemost_not_found" and missing.value.status == 404
    assert missing.value.request_id and missing.value.params["request_id"] == missing.value.request_id
    with pytest.raises(TelemostError) as bad:
        telemost.create(waiting_room_level="NOBODY")
    assert bad.value.code == "telemost_bad_request" and bad.value.upstream == "ValidationError"
    with pytest.raises(TelemostError) as weird_id:
        telemost.get("../conferences")
    assert weird_id.value.code == "telemost_not_found"
    sent = [e["x_request_id"] for e in control("GET", "/telemost/requests")]
    assert len(sent) == 2 and all(len(x) == 32 for x in sent) and sent[0] != sent[1]


def test_unknown_cohosts_name_the_addresses(telemost):
    meeting = telemost.create()
    with pytest.raises(TelemostError) as unknown:
        telemost.add_cohosts(meeting.id, ["x@unknown.example", "y@unknown.example"])
    assert unknown.value.code == "telemost_unknown_users"
    assert unknown.value.params["emails"] == ["x@unknown.example", "y@unknown.example"]


def test_a_timed_out_create_is_not_repeated(telemost, control):
    telemost.api.timeout = 0.5
    control.fault(server="telemost", mode="timeout", value=1.5, count=1)
    with pytest.raises(TelemostError) as lost:
        telemost.create()
    assert lost.value.code == "telemost_unavailable"
    assert len(control("GET", "/telemost/requests")) == 0  # the fault answered before the view
    assert len(control("GET", "/faults")) == 0  # one attempt only: the count-1 fault was the only hit


def test_reads_are_retried_after_a_timeout(telemost, control):
    meeting = telemost.create()
    telemost.api.timeout = 0.5
    control.fault(server="telemost", mode="timeout", value=1.5, count=1)
    assert telemost.get(meeting.id).id == meeting.id


def test_429_is_retried_with_bounded_backoff(telemost, control):
    slept = []
    telemost.api._sleep = slept.append
    control.fault(server="telemost", mode="429", count=2)
    assert telemost.create().id
    assert len(slept) == 2 and all(s <= 5.0 for s in slept)
    control.fault(server="telemost", mode="429", count=10)
    with pytest.raises(TelemostError) as limited:
        telemost.create()
    assert limited.value.code == "telemost_rate_limited" and len(slept) == 5
