"""Security headers on every response the app gives: every registered route, errors, assets, /metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import MAX_BODY_BYTES

STATIC = Path(__file__).resolve().parents[2] / "static"
# A file the app serves under /static/ (the committed front-end bundle).
STATIC_FILE = next(p for p in sorted(STATIC.rglob("*.js")) if p.is_file()).relative_to(STATIC)


def plausible_path(rule) -> str:
    """The rule's URL with every variable filled in plausibly (an asset for static, 1 for numbers)."""
    if rule.endpoint == "static":
        return f"/static/{STATIC_FILE.as_posix()}"
    values = {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        values[name] = "1" if "Integer" in kind or "RowId" in kind else "x"
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: values[m.group(1)], rule.rule)


def assert_security_headers(response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    csp = response.headers["Content-Security-Policy"]
    ancestors = re.search(r"frame-ancestors ([^;]+)", csp).group(1)
    assert "*" not in ancestors
    assert response.headers.get("X-Frame-Options") is None
    assert response.headers.get("Access-Control-Allow-Origin") != "*"


def every_request(app, headers):
    """(method, path, headers) for every rule and method of the url map, with the auth it expects."""
    portal = app.config["TEST_PORTAL"]
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = plausible_path(rule)
            if path.startswith("/tasks/"):
                auth = headers["cron"]
            elif path.startswith("/api/admin/") or path.startswith(("/api/dialogs", "/api/users")):
                auth = headers["admin"]
                path += f"?portal={portal}"
            else:
                auth = headers["bearer"]
            yield method, path, auth


def test_every_route_sends_the_security_headers(edge_app):
    app, headers = edge_app
    client = app.test_client()
    seen = 0
    for method, path, auth in every_request(app, headers):
        response = client.open(path, method=method, headers={**auth, "Origin": "https://crm.example.ru"})
        assert response.status_code != 500, (method, path)  # 502/503: the fake portal is unreachable
        try:
            assert_security_headers(response)
        except (AssertionError, KeyError, AttributeError) as exc:
            raise AssertionError(f"{method} {path} → {response.status_code}: {dict(response.headers)}") from exc
        finally:
            response.close()  # static files are streamed from an open file
        seen += 1
    assert seen == sum(len(r.methods - {"HEAD", "OPTIONS"}) for r in app.url_map.iter_rules())


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/no-such-page", {}, 404),
        ("GET", "/api/no-such-thing", {}, 404),
        ("DELETE", "/health", {}, 405),
        ("POST", "/api/session", {"data": b"x" * (MAX_BODY_BYTES + 1)}, 413),
        ("GET", "/api/admin/status", {}, 401),
        ("GET", "/metrics", {"environ_base": {"REMOTE_ADDR": "192.0.2.9"}}, 403),
        ("HEAD", "/health", {}, 200),
        ("OPTIONS", "/api/admin/status", {}, 200),
    ],
)
def test_errors_and_automatic_answers_send_them_too(edge_app, method, path, kwargs, status):
    app, _ = edge_app
    response = app.test_client().open(path, method=method, **kwargs)
    assert response.status_code == status
    assert_security_headers(response)
    response.close()


def test_html_pages_outside_the_frame_may_be_framed_by_the_app_only(edge_app):
    app, _ = edge_app
    response = app.test_client().get("/no-such-page", headers={"Accept": "text/html"})
    assert response.mimetype == "text/html"
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]


def test_json_and_assets_may_not_be_framed_at_all(edge_app):
    app, headers = edge_app
    client = app.test_client()
    for response in (client.get("/health"), client.get(f"/static/{STATIC_FILE.as_posix()}")):
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        response.close()
