"""Failed admin, cron and metrics token attempts are counted per client address, throttled and audited."""

import json

import pytest
import sqlalchemy as sa

from app import create_app
from database import audit_log, auth_failures
from models.throttle import AuthThrottle, TooManyAttempts
from tests.conftest import make_config

ATTEMPTS = 3
WINDOW = 60


@pytest.fixture
def config(tmp_path):
    """A SQLite testing config with a small burst allowance."""
    return make_config(
        tmp_path, AUTH_THROTTLE_ATTEMPTS=ATTEMPTS, AUTH_THROTTLE_WINDOW_SECONDS=WINDOW, METRICS_TOKEN="m" * 40
    )


@pytest.fixture
def second_worker(config):
    """Another app on the same database: what a second gunicorn worker is."""
    application = create_app(config)
    yield application.test_client()
    application.extensions["db"].dispose()


def failure_rows(services) -> list[dict]:
    with services.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(auth_failures).order_by(auth_failures.c.scope))]


def audit_rows(services) -> list[dict]:
    with services.db.read() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
    return [dict(r._mapping) for r in rows]


def test_cron_token_burst_across_workers_is_throttled_and_audited(client, second_worker, services, config):
    wrong = {"X-Cron-Token": "not-the-cron-token"}
    statuses = [worker.post("/tasks/refresh", headers=wrong).status_code for worker in (client, second_worker, client)]
    assert statuses == [401, 401, 401]
    refused = second_worker.post("/tasks/refresh", headers=wrong)
    assert refused.status_code == 429
    assert refused.get_json() == {
        "error": "too_many_attempts",
        "message": f"Too many failed attempts from your address. Try again in {refused.headers['Retry-After']} s.",
    }
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW
    # Once throttled, even the right token waits: guessing cannot go on under cover of the 429s.
    right = client.post("/tasks/refresh", headers={"X-Cron-Token": config["CRON_TOKEN"]})
    assert right.status_code == 429

    [row] = failure_rows(services)
    assert (row["scope"], row["client"], row["failures"]) == ("cron", "127.0.0.1", ATTEMPTS)
    audits = audit_rows(services)
    assert [(a["actor"], a["action"], a["target"]) for a in audits] == [
        ("client:127.0.0.1", "auth_failed", "cron"),
        ("client:127.0.0.1", "auth_failed", "cron"),
        ("client:127.0.0.1", "auth_throttled", "cron"),
    ]
    assert json.loads(audits[-1]["detail"]) == {"ip": "127.0.0.1", "failures": ATTEMPTS}
    assert all("not-the-cron-token" not in a["detail"] for a in audits)

    # Another address is not affected.
    other = client.post(
        "/tasks/refresh", headers={"X-Cron-Token": config["CRON_TOKEN"]}, environ_base={"REMOTE_ADDR": "192.0.2.10"}
    )
    assert other.status_code == 200


@pytest.mark.parametrize(
    "send",
    [
        lambda c, t: c.get("/api/admin/status", headers={"X-API-Token": t}),
        lambda c, t: c.get("/api/admin/status", query_string={"token": t}),
    ],
    ids=["header", "query"],
)
def test_admin_token_burst_is_throttled(client, services, config, send):
    assert [send(client, f"guess-{i}").status_code for i in range(ATTEMPTS)] == [401] * ATTEMPTS
    refused = send(client, config["ADMIN_API_TOKEN"])
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_attempts"
    assert int(refused.headers["Retry-After"]) >= 1
    assert [(r["scope"], r["failures"]) for r in failure_rows(services)] == [("admin", ATTEMPTS)]


def test_requests_without_a_token_are_not_counted(client, services, config):
    for _ in range(ATTEMPTS + 2):
        assert client.get("/api/admin/status").status_code == 401
        assert client.post("/tasks/refresh").status_code == 401
    assert failure_rows(services) == []
    assert client.get("/api/admin/status", headers={"X-API-Token": config["ADMIN_API_TOKEN"]}).status_code == 200


def test_clients_behind_the_proxy_are_told_apart(client, services):
    # With TRUSTED_PROXIES=1 the address is the one nginx put last in X-Forwarded-For.
    def attempt(address):
        return client.post("/tasks/refresh", headers={"X-Cron-Token": "wrong", "X-Forwarded-For": address})

    assert [attempt("198.51.100.1").status_code for _ in range(ATTEMPTS)] == [401] * ATTEMPTS
    assert attempt("198.51.100.1").status_code == 429
    assert attempt("198.51.100.2").status_code == 401
    assert {r["client"]: r["failures"] for r in failure_rows(services)} == {"198.51.100.1": ATTEMPTS, "198.51.100.2": 1}


def test_metrics_bearer_guesses_are_throttled(client, config):
    elsewhere = {"REMOTE_ADDR": "203.0.113.9"}
    guesses = [
        client.get("/metrics", headers={"Authorization": "Bearer guess"}, environ_base=elsewhere)
        for _ in range(ATTEMPTS)
    ]
    assert [r.status_code for r in guesses] == [401] * ATTEMPTS
    right = {"Authorization": f"Bearer {config['METRICS_TOKEN']}"}
    assert client.get("/metrics", headers=right, environ_base=elsewhere).status_code == 429


@pytest.fixture
def throttle(storage_config):
    """The throttle on SQLite, then on PostgreSQL, with audit entries collected in a list."""
    application = create_app(storage_config)
    audited = []
    yield AuthThrottle(application.extensions["db"], ATTEMPTS, WINDOW, lambda *entry: audited.append(entry)), audited
    application.extensions["db"].dispose()


def test_window_ends_and_counting_starts_again(throttle):
    throttle, audited = throttle
    t0 = 1_000_000
    assert [throttle.failed("cron", "192.0.2.1", at=t0 + i) for i in range(ATTEMPTS)] == [1, 2, 3]
    with pytest.raises(TooManyAttempts) as refused:
        throttle.check("cron", "192.0.2.1", at=t0 + 10)
    assert (refused.value.status, refused.value.retry_after) == (429, WINDOW - 10)
    throttle.check("admin", "192.0.2.1", at=t0 + 10)  # another scope is counted apart
    throttle.check("cron", "192.0.2.1", at=t0 + WINDOW)  # the window is over
    assert throttle.failed("cron", "192.0.2.1", at=t0 + WINDOW) == 1
    assert [entry[1] for entry in audited] == ["auth_failed", "auth_failed", "auth_throttled", "auth_failed"]


def test_old_windows_of_other_clients_are_pruned(throttle):
    throttle, _ = throttle
    throttle.failed("admin", "192.0.2.1", at=1_000_000)
    throttle.failed("admin", "192.0.2.2", at=1_000_000 + WINDOW)
    with throttle.db.read() as conn:
        assert [r.client for r in conn.execute(sa.select(auth_failures.c.client))] == ["192.0.2.2"]
