"""Fixtures of the attack tests (issue 7): a live stack with portal1 installed, signed-in apps on SQLite and
PostgreSQL, two app instances on one database, the redacting log handler, and transport stand-ins."""

import io
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import create_app
from models.logs import configure_logging
from models.security import Identity
from tests.conftest import make_config
from tests.factories import make_portal
from tests.integration.helpers import portal_info
from tests.unit import conftest as unit_fixtures


@pytest.fixture
def installed(live_stack):
    """The sandbox's portal1, installed by its genuine ONAPPINSTALL; returns the sandbox's view of it."""
    result = live_stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
    assert result["status"] == 200, result["body"]
    return portal_info(live_stack)


THROTTLE_ATTEMPTS = 3


@pytest.fixture
def throttled_config(tmp_path):
    """A SQLite testing config that throttles after THROTTLE_ATTEMPTS failed token attempts."""
    return make_config(tmp_path, AUTH_THROTTLE_ATTEMPTS=THROTTLE_ATTEMPTS, AUTH_THROTTLE_WINDOW_SECONDS=300)


@pytest.fixture
def two_workers(throttled_config):
    """Two app instances on one database, as two gunicorn workers (or two hosts) are."""
    apps = [create_app(throttled_config) for _ in range(2)]
    yield [application.test_client() for application in apps]
    for application in apps:
        application.extensions["db"].dispose()


@pytest.fixture
def root_log():
    """What the root handler installed by configure_logging writes (the app's and werkzeug's lines)."""
    configure_logging("INFO")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_b24_redacting", False))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def _signed_in_app(config):
    application = create_app(config)
    services = application.extensions["services"]
    portal = make_portal(services)
    identity = Identity(portal.member_id, 1, portal.id, portal.domain, "Анна Смирнова", True)
    headers = {
        "bearer": {"Authorization": f"Bearer {services.signer.issue(identity)[0]}"},
        "admin": {"X-API-Token": config["ADMIN_API_TOKEN"]},
        "cron": {"X-Cron-Token": config["CRON_TOKEN"]},
        "none": {},
    }
    return application, headers


@pytest.fixture
def signed_in(config):
    """An app on SQLite with one installed portal: (client, headers by kind: bearer, admin, cron, none)."""
    application, headers = _signed_in_app(config)
    yield application.test_client(), headers
    application.extensions["db"].dispose()


@pytest.fixture
def signed_in_any_db(storage_config):
    """Like `signed_in`, on SQLite and then on PostgreSQL."""
    application, headers = _signed_in_app(storage_config)
    yield application.test_client(), headers
    application.extensions["db"].dispose()


# The transport tests' DNS stand-in and local portal server, shared with the SSRF attacks here.
fake_dns = unit_fixtures.fake_dns
portal_server = unit_fixtures.portal_server


@pytest.fixture
def redirecting_portal():
    """A portal stand-in on 127.0.0.1 that answers every POST with a 302 to `redirecting_portal.target`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(302)
            self.send_header("Location", server.target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.target = ""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
