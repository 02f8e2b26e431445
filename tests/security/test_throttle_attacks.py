"""Issue 7 finding 11, attacked harder: guessing tokens from many IPv6 addresses of one subscriber, from
both spellings of one IPv4 address, and across two app instances sharing the database."""

import sqlalchemy as sa

from database import auth_failures
from tests.security.conftest import THROTTLE_ATTEMPTS


def failures(client) -> dict[tuple[str, str], int]:
    """(scope, client) → failures, as stored."""
    db = client.application.extensions["db"]
    with db.read() as conn:
        rows = conn.execute(sa.select(auth_failures.c.scope, auth_failures.c.client, auth_failures.c.failures)).all()
    return {(r.scope, r.client): r.failures for r in rows}


def cron_guess(client, forwarded_for: str, token: str = "guess"):
    """A wrong X-Cron-Token from the address nginx (TRUSTED_PROXIES=1) reports."""
    return client.post("/tasks/refresh", headers={"X-Cron-Token": token, "X-Forwarded-For": forwarded_for})


def test_fresh_ipv6_addresses_of_one_64_are_one_client(two_workers, throttled_config):
    first, second = two_workers
    statuses = [
        cron_guess((first, second)[n % 2], f"2001:db8:1:2::{n + 1:x}").status_code for n in range(THROTTLE_ATTEMPTS)
    ]
    assert statuses == [401] * THROTTLE_ATTEMPTS

    refused = cron_guess(second, "2001:db8:1:2:ffff:ffff:ffff:ffff", throttled_config["CRON_TOKEN"])

    assert refused.status_code == 429
    assert failures(first) == {("cron", "2001:db8:1:2::/64"): THROTTLE_ATTEMPTS}
    # The neighbouring /64 is somebody else.
    assert cron_guess(first, "2001:db8:1:3::1", throttled_config["CRON_TOKEN"]).status_code == 200


def test_an_ipv4_address_and_its_ipv6_mapped_spelling_are_one_client(two_workers):
    first, second = two_workers
    spellings = ["198.51.100.7", "::ffff:198.51.100.7", "::ffff:c633:6407"]
    assert [cron_guess(w, a).status_code for w, a in zip([first, second, first], spellings, strict=True)] == [401] * 3

    assert cron_guess(second, "198.51.100.7").status_code == 429
    assert failures(first) == {("cron", "198.51.100.7"): THROTTLE_ATTEMPTS}


def test_admin_token_guesses_in_header_and_query_add_up_across_instances(two_workers, throttled_config):
    first, second = two_workers
    guesses = [
        first.get("/api/admin/status", headers={"X-API-Token": "guess-1"}),
        second.get("/api/admin/status?token=guess-2"),
        first.get("/api/admin/status?%74oken=guess-3"),
    ]
    assert [r.status_code for r in guesses] == [401] * THROTTLE_ATTEMPTS

    refused = second.get("/api/admin/status", headers={"X-API-Token": throttled_config["ADMIN_API_TOKEN"]})

    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_attempts"
    assert failures(first) == {("admin", "127.0.0.1"): THROTTLE_ATTEMPTS}
