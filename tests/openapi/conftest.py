"""The fuzzing world: one app per module wired to the sandbox, a seeded portal, conferences and every credential.

Schemathesis calls the app in-process (WSGI); the app talks to the sandbox over real HTTP on 127.0.0.1.
One app serves the whole module so the seed is made once; each security scheme gets a valid credential.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from app import create_app
from database import portals
from models.security import token_hash
from tests.conferences.conftest import TELEMOST_KNOBS, Control, World
from tests.conftest import make_config
from tests.factories import make_dialog


@dataclass
class Seed:
    """Valid credentials for each security scheme, and the seeded ids."""

    world: World
    employee: dict  # Authorization: Bearer <session JWT> of user 2 (not an admin)
    admin: dict  # Authorization: Bearer <session JWT> of user 1 (a portal admin)
    portal_token: dict  # X-API-Token: the portal's own token
    global_token: dict  # X-API-Token: ADMIN_API_TOKEN
    cron: dict  # X-Cron-Token: CRON_TOKEN
    web_session: dict  # the code flow's session cookie of user 2
    member_id: str
    application_token: str  # the portal's, for the Bitrix24 event routes
    conference_ids: list[int]
    chat_id: int


@pytest.fixture(scope="module")
def seed(sandbox_process, tmp_path_factory):
    """An app on a fresh database with one installed sandbox portal, two users, conferences and tokens."""
    info = sandbox_process.info
    config = make_config(
        tmp_path_factory.mktemp("openapi"),
        **sandbox_process.app_config(TELEMOST_API_URL=info["telemost"]),
        # The fuzzer sends many bad tokens from one address: the throttle must not turn them into 429s.
        AUTH_THROTTLE_ATTEMPTS=1_000_000,
    )
    app = create_app(config)
    control = Control(info)
    control.configure(**{**TELEMOST_KNOBS, "telemost_rate_burst": 100000})
    world = World(app, control)
    portal_id = world.install("portal1")
    employee = world.user(2).headers
    admin = world.user(1).headers
    services = app.extensions["services"]
    issued = services.portals.issue_admin_token(portal_id, actor="test")
    application_token = "fuzz-application-token"
    with services.db.write() as conn:
        conn.execute(
            sa.update(portals)
            .where(portals.c.id == portal_id)
            .values(application_token_hash=token_hash(application_token), bot_id=100)
        )
    make_dialog(services, portal_id, 7001)
    identity = services.signer.verify(employee["Authorization"].split(" ", 1)[1])
    web_session, _ = app.extensions["code_flow"].issue_web_session(identity)
    ids = []
    for name, kind in (("Planning", "conference"), ("Town hall", "broadcast")):
        response = world.client.post(
            "/api/conferences",
            json={"name": name, "type": kind, "start_date": "2030-01-02", "start_time": "10:00"},
            headers=employee,
        )
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["id"])
    yield Seed(
        world=world,
        employee=employee,
        admin=admin,
        portal_token={"X-API-Token": issued["token"]},
        global_token={"X-API-Token": config["ADMIN_API_TOKEN"]},
        cron={"X-Cron-Token": config["CRON_TOKEN"]},
        web_session={"b24_web_session": web_session},
        member_id=control.portal("portal1")["member_id"],
        application_token=application_token,
        conference_ids=ids,
        chat_id=7001,
    )
    app.extensions["db"].dispose()
