"""Issue 7 finding 2, attacked harder at the model every connect window goes through: tickets and states
carried to the other provider, two tabs of one confirmation page, and replays after success."""

import pytest

from models.connect import ConnectRefused


def refused_code(call) -> str:
    with pytest.raises(ConnectRefused) as caught:
        call()
    return caught.value.code


def test_a_ticket_of_one_provider_opens_nothing_at_the_other(services):
    ticket = services.connect.issue("amocrm", "global")

    assert refused_code(lambda: services.connect.open(ticket, "nonce-a", "yandex")) == "link_unknown"
    # The amoCRM link itself is untouched by the attempt.
    assert services.connect.open(ticket, "nonce-a", "amocrm").provider == "amocrm"


def test_a_state_of_one_provider_finishes_nothing_at_the_other(services):
    ticket = services.connect.issue("amocrm", "global")
    services.connect.open(ticket, "nonce-a", "amocrm")
    _link, state = services.connect.confirm(ticket, "nonce-a", "amocrm")

    assert refused_code(lambda: services.connect.finish(state, "nonce-a", "yandex")) == "link_unknown"
    assert services.connect.finish(state, "nonce-a", "amocrm").provider == "amocrm"


def test_two_tabs_of_one_confirmation_page_start_one_consent(services):
    """The same browser (same cookie) presses "Connect" in two tabs: only one OAuth state is ever issued."""
    ticket = services.connect.issue("amocrm", "global")
    services.connect.open(ticket, "nonce-a", "amocrm")
    _link, state = services.connect.confirm(ticket, "nonce-a", "amocrm")

    assert refused_code(lambda: services.connect.confirm(ticket, "nonce-a", "amocrm")) == "link_used"
    assert services.connect.finish(state, "nonce-a", "amocrm").provider == "amocrm"


def test_nothing_replays_after_success(services):
    ticket = services.connect.issue("amocrm", "global")
    services.connect.open(ticket, "nonce-a", "amocrm")
    _link, state = services.connect.confirm(ticket, "nonce-a", "amocrm")
    services.connect.finish(state, "nonce-a", "amocrm")

    assert refused_code(lambda: services.connect.open(ticket, "nonce-b", "amocrm")) == "link_used"
    assert refused_code(lambda: services.connect.confirm(ticket, "nonce-a", "amocrm")) == "link_used"
    assert refused_code(lambda: services.connect.finish(state, "nonce-a", "amocrm")) == "link_used"


@pytest.mark.parametrize("nonce", [None, "", "nonce-b"])
def test_a_callback_without_the_opening_browsers_nonce_is_refused(services, nonce):
    ticket = services.connect.issue("amocrm", "global")
    services.connect.open(ticket, "nonce-a", "amocrm")
    _link, state = services.connect.confirm(ticket, "nonce-a", "amocrm")

    assert refused_code(lambda: services.connect.finish(state, nonce, "amocrm")) == "other_browser"
    # The refusal spends nothing: the browser that opened the link still finishes.
    assert services.connect.finish(state, "nonce-a", "amocrm").provider == "amocrm"
