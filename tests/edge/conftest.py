"""Fixtures of the edge tests: apps whose rate-limit clock the test moves, and a signed-in portal."""

from __future__ import annotations

import pytest

from app import create_app
from models.security import Identity
from tests.conftest import make_config
from tests.factories import make_portal

LIMIT = 3
WINDOW = 60


class Clock:
    """The rate limiter's clock, moved by hand: windows end when the test says so, not after a sleep."""

    def __init__(self, start: int = 1_900_000_000):
        self.now = start

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock():
    """A hand-moved clock shared by the apps of one test."""
    return Clock()


def limit_settings(config: dict) -> dict:
    """The config, allowing LIMIT requests per WINDOW per address and group (and /metrics to anyone)."""
    return {**config, "RATE_LIMIT_REQUESTS": LIMIT, "RATE_LIMIT_WINDOW_SECONDS": WINDOW, "METRICS_ALLOW": "0.0.0.0/0"}


def two_apps(config: dict, clock: Clock):
    """Two app instances on one database (two workers or two hosts), both on the hand-moved clock."""
    apps = [create_app(config) for _ in range(2)]
    for application in apps:
        application.extensions["rate_limit"].clock = clock
    return apps


@pytest.fixture
def limited_apps(config, clock):
    """Two rate-limited app instances on one SQLite database."""
    apps = two_apps(limit_settings(config), clock)
    yield apps
    for application in apps:
        application.extensions["db"].dispose()


@pytest.fixture
def limited_apps_on_postgres(pg_url, tmp_path, clock):
    """Two rate-limited app instances on one PostgreSQL schema, as two hosts are."""
    apps = two_apps(limit_settings(make_config(tmp_path, DATABASE_URL=pg_url)), clock)
    yield apps
    for application in apps:
        application.extensions["db"].dispose()


@pytest.fixture(scope="module")
def edge_app(tmp_path_factory):
    """An app on SQLite with one installed portal, shared by a module's tests; yields (app, headers by kind)."""
    config = make_config(
        tmp_path_factory.mktemp("edge"), CORS_ORIGINS="https://crm.example.ru", METRICS_ALLOW="127.0.0.1"
    )
    application = create_app(config)
    services = application.extensions["services"]
    portal = make_portal(services)
    identity = Identity(portal.member_id, 1, portal.id, portal.domain, "Анна Смирнова", True)
    headers = {
        "bearer": {"Authorization": f"Bearer {services.signer.issue(identity)[0]}"},
        "admin": {"X-API-Token": config["ADMIN_API_TOKEN"]},
        "cron": {"X-Cron-Token": config["CRON_TOKEN"]},
    }
    application.config["TEST_PORTAL"] = portal.member_id
    yield application, headers
    application.extensions["db"].dispose()
