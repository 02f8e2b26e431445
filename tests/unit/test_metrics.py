"""/metrics: served by prometheus_client from the database, and guarded by the app itself."""

import time

import pytest

from app import create_app
from models.vault import STATUSES, TokenSet

TOKEN = "metrics-" + "x" * 40
ELSEWHERE = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.mark.parametrize(
    ("overrides", "environ", "headers", "status"),
    [
        ({}, {"REMOTE_ADDR": "127.0.0.1"}, {}, 200),
        ({}, {"REMOTE_ADDR": "::1"}, {}, 200),
        ({}, ELSEWHERE, {}, 403),
        ({"METRICS_ALLOW": "203.0.113.0/24"}, ELSEWHERE, {}, 200),
        ({"METRICS_TOKEN": TOKEN}, ELSEWHERE, {}, 401),
        ({"METRICS_TOKEN": TOKEN}, ELSEWHERE, {"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"METRICS_TOKEN": TOKEN}, ELSEWHERE, {"Authorization": "Bearer wrong"}, 401),
        ({"METRICS_TOKEN": TOKEN}, {"REMOTE_ADDR": "127.0.0.1"}, {"Authorization": "Bearer wrong"}, 401),
        ({}, ELSEWHERE, {"Authorization": "Bearer anything"}, 401),  # no METRICS_TOKEN: no bearer works
        ({"METRICS_ALLOW": ""}, {"REMOTE_ADDR": "127.0.0.1"}, {}, 403),
    ],
)
def test_metrics_access(make_client, overrides, environ, headers, status):
    response = make_client(**overrides).get("/metrics", headers=headers, environ_base=environ)
    assert response.status_code == status
    if status != 200:
        assert set(response.get_json()) == {"error", "message"}


def test_a_remote_client_behind_nginx_is_not_localhost(make_client):
    # nginx connects from 127.0.0.1, but X-Forwarded-For names the real client: that one is checked.
    client = make_client()
    response = client.get(
        "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert response.status_code == 403


def test_metrics_text_comes_from_the_database(app, client, services):
    now = int(time.time())
    services.vault.store("bitrix24", "m1", "portal", TokenSet("a1", "r1", now + 3600, now + 170 * 86400))
    services.vault.store("amocrm", "acme", "account", TokenSet("a2", "r2", now + 3600, now + 170 * 86400))
    services.metrics.incr("refresh_runs_total", trigger="http")
    services.metrics.incr("refresh_runs_total", trigger="http")
    services.metrics.incr("refresh_failures_total", provider="bitrix24", error_class="transient")
    services.metrics.flush()
    services.engine.run(trigger="cli")  # one finished run for the last-run gauges

    # A second app on the same database answers the same: nothing lives in a worker's memory.
    other = create_app(app.config.copy())
    try:
        texts = [c.get("/metrics").get_data(as_text=True) for c in (client, other.test_client())]
    finally:
        other.extensions["db"].dispose()
    response = client.get("/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    strip_age = [t.split("b24_refresh_last_run_age_seconds ")[0] for t in texts]
    assert strip_age[0] == strip_age[1]
    samples = {}
    for line in texts[0].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    for provider in ("bitrix24", "yandex", "amocrm"):
        for status in STATUSES:
            expected = {("bitrix24", "active"): 1, ("amocrm", "active"): 1}.get((provider, status), 0)
            assert samples[f'b24_credentials{{provider="{provider}",status="{status}"}}'] == expected
    assert samples['b24_refresh_runs_total{trigger="http"}'] == 2
    assert samples['b24_refresh_runs_total{trigger="cli"}'] == 1
    assert samples['b24_refresh_failures_total{error_class="transient",provider="bitrix24"}'] == 1
    assert "b24_refresh_last_run_duration_seconds" in samples
    assert 0 <= samples["b24_refresh_last_run_age_seconds"] < 60
    for name, kind in [
        ("b24_credentials", "gauge"),
        ("b24_refresh_runs_total", "counter"),
        ("b24_refresh_attempts_total", "counter"),
        ("b24_refresh_success_total", "counter"),
        ("b24_credentials_needs_reauth_total", "counter"),
        ("b24_portals", "gauge"),
        ("b24_refresh_last_run_age_seconds", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in texts[0]


def test_registry_is_built_once_per_app(app, client):
    registry = app.extensions["metrics_registry"]
    client.get("/metrics")
    client.get("/metrics")
    assert app.extensions["metrics_registry"] is registry
    assert [type(c).__name__ for c in registry._collector_to_names] == ["DatabaseCollector"]
