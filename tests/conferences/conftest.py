"""Fixtures for the conferences tests: one sandbox process per session, an in-process app per test.

The app runs in-process (Flask test client) and talks to the sandbox over real HTTP on 127.0.0.1:
the fake portal for REST and the fake Telemost for meetings. A portal is recorded as installed in the
app's database with the sandbox's tokens (the install flow has its own tests), each user keeps their
own Bitrix24 pair (as the iframe open stores it) and the portal has a Yandex account connected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa

from app import create_app
from database import conferences, now, portals
from models.security import Identity
from models.vault import ACCOUNT_SUBJECT, PORTAL_SUBJECT, TokenSet, user_subject
from sandbox.state import DEFAULT_CONFIG
from scripts.stack import running_sandbox
from tests.conftest import make_config

TELEMOST_KNOBS = {k: v for k, v in DEFAULT_CONFIG.items() if k.startswith("telemost_")}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A sandbox process for the whole session: (env, info); tests make their own portals."""
    with running_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.log", portals=0) as pair:
        yield pair


class Control:
    """The sandbox's control API; portal names used in tests ("portal1") are aliases of fresh portals."""

    def __init__(self, info: dict):
        self.base = info["base"]
        self.info = info
        self.portals: dict[str, dict] = {}

    def portal(self, alias: str) -> dict:
        """The sandbox portal behind an alias, created on first use (each test gets its own portals)."""
        if alias not in self.portals:
            self.portals[alias] = self("POST", "/portals", {}, expect=201)
        return self.portals[alias]

    def __call__(self, method: str, path: str, body=None, expect: int | None = 200):
        """Call /_sandbox{path}; returns the JSON answer."""
        response = requests.request(method, f"{self.base}/_sandbox{path}", json=body, timeout=30)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def mint(self, provider: str = "bitrix24", **body) -> dict:
        """One fresh token pair."""
        return self("POST", "/oauth/tokens", {"provider": provider, **body})["tokens"][0]

    def calls(self, portal: str = "portal1") -> list[dict]:
        """REST calls the portal received (top-level requests have batch=None)."""
        return self("GET", f"/portals/{self.portal(portal)['name']}/calls")

    def clear_calls(self, portal: str = "portal1") -> None:
        """Forget the portal's call log."""
        self("DELETE", f"/portals/{self.portal(portal)['name']}/calls")

    def state(self, portal: str = "portal1") -> dict:
        """What the app changed on the portal (calendar events, notifications …)."""
        return self("GET", f"/portals/{self.portal(portal)['name']}/state")

    def meetings(self) -> list[dict]:
        """Conferences the fake Telemost holds."""
        return self("GET", "/telemost/conferences")

    def configure(self, **knobs) -> None:
        """Set sandbox knobs."""
        self("POST", "/config", knobs)

    def fault(self, **spec) -> None:
        """Inject a fault."""
        self("POST", "/faults", spec, expect=201)


@pytest.fixture
def control(sandbox):
    """The control API, with knobs, faults, portal buckets and call logs reset for each test."""
    ctl = Control(sandbox[1])
    ctl.configure(**{**TELEMOST_KNOBS, "telemost_rate_burst": 10000})
    ctl("DELETE", "/faults")
    ctl("DELETE", "/telemost/conferences")
    return ctl


@dataclass
class User:
    """A verified user of a portal as the API sees them: the bearer header and their ids."""

    portal_id: int
    portal_name: str
    user_id: int
    headers: dict


class World:
    """The app wired to the sandbox, with helpers to install portals and sign users in."""

    def __init__(self, app, control: Control):
        self.app = app
        self.client = app.test_client()
        self.services = app.extensions["services"]
        self.control = control
        self.portal_ids: dict[str, int] = {}

    def install(self, name: str = "portal1", *, yandex_login: str | None = "sandbox.user") -> int:
        """Record the sandbox portal as installed with the admin's pair (and a Yandex account)."""
        info = self.control.portal(name)
        admin = self.control.mint(portal=info["name"], user_id=1)
        ts = now()
        with self.services.db.write() as conn:
            portal_id = conn.execute(
                sa.insert(portals).values(
                    member_id=info["member_id"],
                    domain=info["domain"],
                    client_endpoint=info["rest"],
                    server_endpoint=admin["server_endpoint"],
                    status="installed",
                    language="ru",
                    installed_at=ts,
                    updated_at=ts,
                )
            ).inserted_primary_key[0]
        self._store_bitrix(info["member_id"], PORTAL_SUBJECT, admin, portal_id, 1)
        if yandex_login:
            self.connect_yandex(portal_id, yandex_login)
        self.portal_ids[name] = portal_id
        return portal_id

    def _store_bitrix(self, member_id: str, subject: str, pair: dict, portal_id: int, user_id: int) -> int:
        ts = int(time.time())
        return self.services.vault.store(
            "bitrix24",
            member_id,
            subject,
            TokenSet(pair["access_token"], pair["refresh_token"], ts + int(pair["expires_in"]), ts + 10**7),
            portal_id=portal_id,
            user_id=user_id,
            endpoint=pair["server_endpoint"],
        )

    def connect_yandex(self, portal_id: int, login: str, subject: str = ACCOUNT_SUBJECT) -> int:
        """Store a Yandex credential of the sandbox's Yandex OAuth (the portal's, or a user's own)."""
        pair = self.control.mint("yandex", login=login)
        ts = int(time.time())
        return self.services.vault.store(
            "yandex",
            str(pair["user_id"]),
            subject,
            TokenSet(pair["access_token"], pair["refresh_token"], ts + int(pair["expires_in"]), ts + 10**7),
            portal_id=portal_id,
            label=f"{login}@yandex.ru",
        )

    def user(self, user_id: int = 2, portal: str = "portal1", *, own_pair: bool = True) -> User:
        """Sign a user in: their own Bitrix24 pair in the vault and a session token."""
        if portal not in self.portal_ids:
            self.install(portal)
        info = self.control.portal(portal)
        if own_pair:
            pair = self.control.mint(portal=info["name"], user_id=user_id)
            self._store_bitrix(info["member_id"], user_subject(user_id), pair, self.portal_ids[portal], user_id)
        identity = Identity(
            member_id=info["member_id"],
            user_id=user_id,
            portal_id=self.portal_ids[portal],
            domain=info["domain"],
            name=f"User {user_id}",
            is_admin=user_id == 1,
        )
        token, _ = self.services.signer.issue(identity)
        return User(self.portal_ids[portal], portal, user_id, {"Authorization": f"Bearer {token}"})

    def rows(self) -> list[dict]:
        """Every conference row."""
        with self.services.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(conferences).order_by(conferences.c.id))]

    def row(self, conference_id: int) -> dict | None:
        """One conference row."""
        return next((r for r in self.rows() if r["id"] == conference_id), None)


@pytest.fixture
def world(sandbox, control, tmp_path):
    """An in-process app wired to the sandbox."""
    env, info = sandbox
    app = create_app(
        make_config(
            tmp_path,
            BITRIX24_OAUTH_URL=info["oauth"],
            BITRIX24_CLIENT_ID=env["BITRIX24_CLIENT_ID"],
            BITRIX24_CLIENT_SECRET=env["BITRIX24_CLIENT_SECRET"],
            YANDEX_OAUTH_URL=info["yandex_oauth"],
            YANDEX_LOGIN_URL=info["yandex_login"],
            YANDEX_CLIENT_ID=env["YANDEX_CLIENT_ID"],
            YANDEX_CLIENT_SECRET=env["YANDEX_CLIENT_SECRET"],
            TELEMOST_API_URL=info["telemost"],
        )
    )
    yield World(app, control)
    app.extensions["db"].dispose()


@pytest.fixture
def alice(world) -> User:
    """User 2 of portal1 (not an admin)."""
    return world.user(2)
