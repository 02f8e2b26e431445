"""Shared fixtures: app configs on SQLite and PostgreSQL, the Flask app and client, the live stack."""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from app import create_app
from scripts.stack import Stack

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "examples"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def load_fixture(name: str) -> dict:
    """A payload from ../shared/fixtures/examples (never copied into the repo)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def make_config(tmp_path: Path, **overrides) -> dict:
    """A complete testing config on a fresh SQLite file."""
    cfg = {
        "APP_ENV": "testing",
        "SESSION_SIGNING_KEY": secrets.token_urlsafe(32),
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ADMIN_API_TOKEN": secrets.token_urlsafe(32),
        "CRON_TOKEN": secrets.token_urlsafe(32),
        "DATABASE_PATH": str(tmp_path / f"app-{uuid.uuid4().hex[:6]}.db"),
        "DATABASE_URL": "",
        "BITRIX24_CLIENT_ID": "local.test.app",
        "BITRIX24_CLIENT_SECRET": secrets.token_urlsafe(32),
        "BITRIX24_OAUTH_URL": "http://127.0.0.1:9",
        "PUBLIC_URL": "https://app.example.com",
        "ALLOW_LOOPBACK_PORTALS": True,
        "REFRESH_BACKOFF_SECONDS": 0.01,
        "HTTP_TIMEOUT_SECONDS": 5.0,
    }
    cfg.update(overrides)
    return cfg


_pg_state: dict = {}


def postgres_available() -> bool:
    """True when the local PostgreSQL answers (checked once)."""
    if "ok" not in _pg_state:
        try:
            engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
            _pg_state["ok"] = True
        except Exception:  # noqa: BLE001 - any failure means: no server here
            _pg_state["ok"] = False
    return _pg_state["ok"]


@pytest.fixture
def pg_url():
    """A PostgreSQL URL confined to a fresh schema, dropped afterwards; skips when no server answers."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432: PostgreSQL variant skipped")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def storage_config(request, tmp_path):
    """A config on SQLite, then on PostgreSQL (storage tests run on both)."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        return make_config(tmp_path, DATABASE_URL=url)
    return make_config(tmp_path)


@pytest.fixture
def config(tmp_path):
    """A SQLite testing config."""
    return make_config(tmp_path)


@pytest.fixture
def app(config):
    """The app on a fresh SQLite database."""
    application = create_app(config)
    yield application
    application.extensions["db"].dispose()


@pytest.fixture
def client(app):
    """Flask test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Flask CLI runner."""
    return app.test_cli_runner()


@pytest.fixture
def services(app):
    """The app's wired models."""
    return app.extensions["services"]


@pytest.fixture
def make_stack(tmp_path):
    """Start sandbox + app stacks with options (`portals`, `extra_app_env`, …); all stopped afterwards."""
    started: list[Stack] = []

    def start(**options) -> Stack:
        options.setdefault("database_path", str(tmp_path / f"live-{len(started)}.db"))
        options.setdefault("log_dir", tmp_path)
        stack = Stack(**options)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def live_stack(make_stack):
    """The sandbox and the app (gunicorn, 2 workers) on free ports, with one sandbox portal."""
    return make_stack(portals=1)
