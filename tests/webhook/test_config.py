"""BITRIX24_WEBHOOK_URL is validated at start-up: bad URLs stop the app with a message naming the setting
(and never the code); a good one is normalised and puts the portal service in webhook mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from config import ConfigError
from models.bitrix24 import WebhookClient
from models.portal import Portal
from models.webhook import OtherPortal
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
CODE = "s3cr3tc0de9876ab"

BAD_URLS = [
    pytest.param(f"http://acme.bitrix24.ru/rest/1/{CODE}/", "must use https", id="plain-http-public-host"),
    pytest.param(f"https://acme.bitrix24.ru/rest/{CODE}/", "/rest/<user id>/<code>/", id="no-user"),
    pytest.param(f"https://acme.bitrix24.ru/rest/x1/{CODE}/", "/rest/<user id>/<code>/", id="user-not-digits"),
    pytest.param(f"https://acme.bitrix24.ru/rest/1/{CODE}/profile", "/rest/<user id>/<code>/", id="method-in-path"),
    pytest.param(f"https://acme.bitrix24.ru/rest/1/{CODE}/?a=1", "query", id="query"),
    pytest.param(f"https://u:p@acme.bitrix24.ru/rest/1/{CODE}/", "user info", id="user-info"),
    pytest.param(f"https://10.0.0.5/rest/1/{CODE}/", "not a portal host", id="private-ip"),
    pytest.param(f"https://acme.bitrix24.ru:8443/rest/1/{CODE}/", "not a portal host", id="port"),
    pytest.param(f"ftp://acme.bitrix24.ru/rest/1/{CODE}/", "https://", id="scheme"),
    pytest.param(f"acme.bitrix24.ru/rest/1/{CODE}/", "https://", id="no-scheme"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_bad_webhook_url_stops_start_up(tmp_path, url, reason):
    with pytest.raises(ConfigError) as caught:
        create_app(make_config(tmp_path, BITRIX24_WEBHOOK_URL=url, ALLOW_LOOPBACK_PORTALS=False))
    message = str(caught.value)
    assert message.startswith("BITRIX24_WEBHOOK_URL ")
    assert reason in message
    assert CODE not in message


def test_loopback_http_needs_allow_loopback(tmp_path):
    url = f"http://127.0.0.1:5000/rest/1/{CODE}/"
    with pytest.raises(ConfigError, match="BITRIX24_WEBHOOK_URL has a host that is not a portal host"):
        create_app(make_config(tmp_path, BITRIX24_WEBHOOK_URL=url, ALLOW_LOOPBACK_PORTALS=False))
    app = create_app(make_config(tmp_path, BITRIX24_WEBHOOK_URL=url, ALLOW_LOOPBACK_PORTALS=True))
    assert app.config["BITRIX24_WEBHOOK_URL"] == url
    app.extensions["db"].dispose()


def test_good_url_is_normalised_and_selects_webhook_mode(tmp_path):
    app = create_app(make_config(tmp_path, BITRIX24_WEBHOOK_URL=f"  https://Acme.Bitrix24.RU/rest/7/{CODE}  "))
    assert app.config["BITRIX24_WEBHOOK_URL"] == f"https://acme.bitrix24.ru/rest/7/{CODE}/"
    portals = app.extensions["services"].portals
    assert portals.host("acme.bitrix24.ru") == "acme.bitrix24.ru"
    with pytest.raises(OtherPortal):
        portals.host("other.bitrix24.ru")
    portal = Portal(
        1, "m1", "acme.bitrix24.ru", "https://acme.bitrix24.ru/rest/", "", "installed", 1, None, "1", "ru", None, None
    )
    client = portals.client(portal)
    assert isinstance(client, WebhookClient)
    assert client.app_client is None  # no OAuth credential stored: the webhook needs none
    assert CODE not in repr(client) and CODE not in repr(portals.settings.webhook)
    app.extensions["db"].dispose()


def test_without_webhook_url_every_portal_is_served_with_its_token(tmp_path):
    app = create_app(make_config(tmp_path))
    portals = app.extensions["services"].portals
    assert portals.settings.webhook is None
    assert portals.host("other.bitrix24.ru") == "other.bitrix24.ru"
    app.extensions["db"].dispose()


def test_the_real_start_up_refuses_and_names_the_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITRIX24_", "APP_", "ALLOW_"))}
    env.update({k: str(v) for k, v in make_config(tmp_path).items()})
    env.update({"BITRIX24_WEBHOOK_URL": f"http://acme.bitrix24.ru/rest/1/{CODE}/", "ALLOW_LOOPBACK_PORTALS": "0"})
    done = subprocess.run(
        [sys.executable, "-c", "from app import app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "ConfigError: BITRIX24_WEBHOOK_URL must use https" in done.stderr
    assert CODE not in done.stderr + done.stdout
