"""Fixtures of the attack tests: a live stack with one portal installed through the sandbox's own flow."""

import pytest

from tests.integration.helpers import portal_info


@pytest.fixture
def installed(live_stack):
    """The sandbox's portal1, installed by its genuine ONAPPINSTALL; returns the sandbox's view of it."""
    result = live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result["body"]
    return portal_info(live_stack)
