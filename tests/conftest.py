"""Shared fixtures: app configs on SQLite and PostgreSQL, the Flask app and client, the live stack."""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet

from app import create_app
from scripts.stack import Stack, running_sandbox

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "examples"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SANDBOX_APP_URL = "https://app.example.com"  # the app's PUBLIC_URL when the sandbox runs without an app


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
        except Exception:  # any failure means: no server here
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
def make_client(tmp_path):
    """Test clients of apps built with config overrides (all disposed afterwards)."""
    apps = []

    def build(**overrides):
        application = create_app(make_config(tmp_path, **overrides))
        apps.append(application)
        return application.test_client()

    yield build
    for application in apps:
        application.extensions["db"].dispose()


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


class SandboxControl:
    """A sandbox process running alone (no app): its endpoints, generated app credentials and control API.

    Unpacks as `(env, info)` like scripts.stack.running_sandbox.
    """

    # Which fault target plays each provider's OAuth server.
    FAULT_SERVER = {"bitrix24": "oauth", "yandex": "yandex", "amocrm": "amocrm"}

    def __init__(self, env: dict, info: dict):
        self.env = env
        self.info = info
        self.base = info["base"]

    def __iter__(self):
        return iter((self.env, self.info))

    def control(self, method: str, path: str, body=None, expect: int | None = 200):
        """Call /_sandbox/…; asserts the status (when `expect`) and returns the parsed JSON."""
        response = requests.request(method, f"{self.base}/_sandbox{path}", json=body, timeout=60)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path} → {response.status_code}: {response.text}"
        return response.json() if response.content else None

    def mint(self, provider: str = "bitrix24", **body) -> dict:
        """One fresh grant (access + refresh pair) from the sandbox's OAuth server."""
        return self.control("POST", "/oauth/tokens", {"provider": provider, **body})["tokens"][0]

    def grant(self, grant_id: str) -> dict:
        """The newest pair of a grant chain."""
        return self.control("GET", f"/oauth/grants/{grant_id}")

    def refreshes(self, provider: str) -> dict:
        """The sandbox's refresh counters for one provider."""
        return self.control("GET", "/oauth/refreshes")[provider]

    def fault(self, target: str, mode: str, count: int | None = 1, value=None) -> None:
        """Inject a fault on a provider's OAuth server (`bitrix24`, `yandex`, `amocrm`) or any fault target."""
        server = self.FAULT_SERVER.get(target, target)
        self.control("POST", "/faults", {"server": server, "mode": mode, "count": count, "value": value}, expect=201)

    def reset(self) -> None:
        """No faults, zeroed refresh counters, default knobs."""
        self.control("DELETE", "/faults")
        self.control("DELETE", "/oauth/refreshes")
        self.control("POST", "/config", {"payment_required_status": 401})

    def app_config(self, **overrides) -> dict:
        """App settings pointing at this sandbox with its generated credentials."""
        env, info = self.env, self.info
        return {
            "PUBLIC_URL": SANDBOX_APP_URL,
            "BITRIX24_OAUTH_URL": info["oauth"],
            "BITRIX24_CLIENT_ID": env["BITRIX24_CLIENT_ID"],
            "BITRIX24_CLIENT_SECRET": env["BITRIX24_CLIENT_SECRET"],
            "YANDEX_CLIENT_ID": env["YANDEX_CLIENT_ID"],
            "YANDEX_CLIENT_SECRET": env["YANDEX_CLIENT_SECRET"],
            "YANDEX_OAUTH_URL": info["yandex_oauth"],
            "YANDEX_LOGIN_URL": info["yandex_login"],
            "AMOCRM_CLIENT_ID": env["AMOCRM_CLIENT_ID"],
            "AMOCRM_CLIENT_SECRET": env["AMOCRM_CLIENT_SECRET"],
            "AMOCRM_BASE_URL": info["amocrm"],
            "AMOCRM_AUTHORIZE_URL": f"{self.base}/amocrm/oauth",
            "AMOCRM_REDIRECT_URI": env["AMOCRM_REDIRECT_URI"],
            **overrides,
        }


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory):
    """One sandbox process (no app) per test module."""
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    extra = {"AMOCRM_REDIRECT_URI": f"{SANDBOX_APP_URL}/auth/amocrm/callback"}
    with running_sandbox(log, app_url=SANDBOX_APP_URL, extra_env=extra) as (env, info):
        yield SandboxControl(env, info)


@pytest.fixture
def sandbox(sandbox_process):
    """The module's sandbox, reset before and after the test (no faults, zeroed counters, default knobs)."""
    sandbox_process.reset()
    yield sandbox_process
    sandbox_process.reset()


@pytest.fixture
def stored(storage_config):
    """Conference storage on the parametrised database with one installed portal; yields (services, actor)."""
    from models.conference import Actor
    from tests.factories import make_portal

    app = create_app(storage_config)
    services = app.extensions["services"]
    portal = make_portal(services, member_id="m1", domain="p.example")
    yield services, Actor(portal, 2, "Мария")
    app.extensions["db"].dispose()
