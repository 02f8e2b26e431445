"""Request-time refresh: a REST call answered with expired_token refreshes once and retries."""

import time

import pytest
import requests

from app import create_app
from models.bitrix24 import Bitrix24Error
from models.vault import TokenSet
from tests.conftest import make_config
from tests.factories import make_portal


@pytest.fixture
def make_app(sandbox, tmp_path):
    """Build in-process apps wired to the sandbox (extra settings as keywords)."""
    apps = []

    def factory(**extra):
        app = create_app(make_config(tmp_path, **sandbox.app_config(**extra)))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["db"].dispose()


@pytest.fixture
def sandboxed_app(sandbox, make_app):
    return make_app(), sandbox.info


def mint(info, **body):
    response = requests.post(
        f"{info['base']}/_sandbox/oauth/tokens", json={"provider": "bitrix24", "portal": "portal1", **body}, timeout=10
    )
    return response.json()["tokens"][0]


def test_expired_token_refreshes_once_and_retries(sandboxed_app):
    app, info = sandboxed_app
    services = app.extensions["services"]
    grant = mint(info, expires_in=1)
    now = int(time.time())
    # Our clock says the token is good for an hour; the portal already considers it expired.
    cid = services.vault.store(
        "bitrix24",
        grant["member_id"],
        "portal",
        TokenSet(grant["access_token"], grant["refresh_token"], now + 3600, now + 10**7),
        endpoint=grant["server_endpoint"],
    )
    time.sleep(1.5)
    from models.bitrix24 import PortalClient

    client = PortalClient(services.portals.rest, services.vault, services.engine, grant["client_endpoint"], cid)
    result = client.call("user.current")
    assert result.result["ID"] == "1"
    cred = services.vault.get(cid)
    assert cred.version == 2
    current = requests.get(f"{info['base']}/_sandbox/oauth/grants/{grant['grant_id']}", timeout=10).json()
    assert current["refresh_token"] == cred.refresh_token and current["rotations"] == 1


def test_revoked_grant_fails_cleanly_and_counts(sandboxed_app):
    app, info = sandboxed_app
    services = app.extensions["services"]
    grant = mint(info, expires_in=1)
    requests.post(f"{info['base']}/_sandbox/oauth/grants/{grant['grant_id']}/revoke", timeout=10)
    now = int(time.time())
    cid = services.vault.store(
        "bitrix24",
        grant["member_id"],
        "portal",
        TokenSet(grant["access_token"], grant["refresh_token"], now + 3600, now + 10**7),
        endpoint=grant["server_endpoint"],
    )
    from models.bitrix24 import PortalClient

    client = PortalClient(services.portals.rest, services.vault, services.engine, grant["client_endpoint"], cid)
    with pytest.raises(Bitrix24Error) as info_:
        client.call("user.current")
    assert info_.value.code == "expired_token"
    cred = services.vault.get(cid)
    assert (cred.failure_count, cred.last_error, cred.status) == (1, "invalid_grant", "active")
    # A second call right away does not spend another attempt on the same dead pair.
    with pytest.raises(Bitrix24Error):
        client.call("user.current")
    assert services.vault.get(cid).failure_count == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bitrix24_refresh_by_get_or_post(sandbox, make_app, method):
    """Spec §2.2: the docs show GET + query, b24jssdk POSTs a form (unconfirmed): both must work."""
    _, info = sandbox
    services = make_app(BITRIX24_OAUTH_METHOD=method).extensions["services"]
    grant = mint(info)
    now = int(time.time())
    cid = services.vault.store(
        "bitrix24",
        grant["member_id"],
        "portal",
        TokenSet(grant["access_token"], grant["refresh_token"], now + 30, now + 10**7),
    )
    assert services.engine.refresh(cid).result == "refreshed"
    counts = requests.get(f"{info['base']}/_sandbox/oauth/refreshes", timeout=10).json()["bitrix24"]
    assert counts["by_grant"] == {grant["grant_id"]: 1}


def yandex_code(info, client_id):
    answer = requests.get(
        f"{info['yandex_oauth']}/authorize",
        allow_redirects=False,
        timeout=10,
        params={"response_type": "code", "client_id": client_id, "redirect_uri": "http://127.0.0.1:9/cb", "state": "s"},
    )
    return answer.headers["Location"].split("code=")[1].split("&")[0]


def test_a_yandex_account_serves_one_portal(sandbox, make_app):
    from models.integrations import IntegrationError

    env, info = sandbox
    services = make_app().extensions["services"]
    first, second = make_portal(services), make_portal(services)
    assert services.integrations.connect_yandex(first.id, yandex_code(info, env["YANDEX_CLIENT_ID"]))["connected"]
    with pytest.raises(IntegrationError) as refused:
        services.integrations.connect_yandex(second.id, yandex_code(info, env["YANDEX_CLIENT_ID"]))
    assert refused.value.status == 409
    status = services.integrations.yandex_status
    assert status(first.id)["connected"] and not status(second.id)["connected"]
