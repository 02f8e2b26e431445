"""Issue 7 finding 3, attacked harder: every path spelling that might reach /metrics or the task endpoint past
a proxy's allow-list, with and without a trusted proxy, with prefix headers a client made up. Sent as raw
PATH_INFO (what gunicorn hands over for `GET //metrics`), from an address outside METRICS_ALLOW."""

import pytest

REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
CLIENT_PREFIX = {"X-Forwarded-Prefix": "/telemost-app", "X-Script-Name": "/telemost-app"}


def send(client, raw_path: str, method: str = "GET", headers: dict | None = None):
    """A request whose PATH_INFO is exactly `raw_path` (the test client would read `//x` as a host)."""
    return client.open(
        "/", method=method, environ_overrides={"PATH_INFO": raw_path}, environ_base=REMOTE, headers=headers or {}
    )


@pytest.mark.parametrize("trusted_proxies", [0, 1])
@pytest.mark.parametrize("base_path", ["", "/telemost-app"])
@pytest.mark.parametrize("raw_path", ["//metrics", "///metrics", "/metrics"])
def test_metrics_in_any_spelling_is_refused_to_a_remote_client(make_client, trusted_proxies, base_path, raw_path):
    client = make_client(TRUSTED_PROXIES=trusted_proxies, BASE_PATH=base_path)
    response = send(client, raw_path, headers=CLIENT_PREFIX)
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/telemost-app/telemost-app/metrics",
        "//telemost-app/metrics",
        "/telemost-app//telemost-app/metrics",
        "/./metrics",
        "/metrics/.",
        "/telemost-app/telemost-app/tasks/refresh",
    ],
)
def test_dotted_and_doubled_prefix_paths_name_nothing(make_client, raw_path):
    client = make_client(TRUSTED_PROXIES=1, BASE_PATH="/telemost-app")
    method = "POST" if "tasks" in raw_path else "GET"
    assert send(client, raw_path, method, CLIENT_PREFIX).status_code == 404


@pytest.mark.parametrize("header", ["X-Forwarded-Prefix", "X-Script-Name"])
def test_without_a_trusted_proxy_a_clients_prefix_header_strips_nothing(make_client, header):
    client = make_client(TRUSTED_PROXIES=0)
    assert send(client, "/telemost-app/metrics", headers={header: "/telemost-app"}).status_code == 404
    response = send(client, "/health", headers={header: "/telemost-app"})
    assert response.status_code == 200 and response.get_json()["base_path"] == "/"


@pytest.mark.parametrize("raw_path", ["//tasks/refresh", "/tasks/refresh"])
def test_the_task_endpoint_in_any_spelling_wants_the_cron_token(make_client, raw_path):
    client = make_client(TRUSTED_PROXIES=0, BASE_PATH="/telemost-app")
    response = send(client, raw_path, "POST")
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"
