"""PUBLIC_URL over plain HTTP and on IDN (Cyrillic) hosts: punycode for URLs, Unicode for people."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

import config
from app import create_app
from tests.conftest import make_config


def production(**overrides):
    cfg = config.defaults()
    cfg.update(
        {
            "APP_ENV": "production",
            "SESSION_SIGNING_KEY": "k" * 40,
            "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "ADMIN_API_TOKEN": "a" * 40,
            "CRON_TOKEN": "c" * 40,
            "BITRIX24_CLIENT_ID": "app.1",
            "BITRIX24_CLIENT_SECRET": "s" * 40,
        }
    )
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("http://телемост.рф/", "http://xn--e1aarfksbg.xn--p1ai"),
        (
            "http://Приложение.Пример.РФ:8080/телемост-app",
            "http://xn--e1aabhcpqfgk.xn--e1afmkfd.xn--p1ai:8080/телемост-app",
        ),
        ("https://myapp.duckdns.org", "https://myapp.duckdns.org"),
        ("http://xn--e1aarfksbg.xn--p1ai/app/", "http://xn--e1aarfksbg.xn--p1ai/app"),
    ],
)
def test_production_accepts_plain_http_and_idn_hosts_as_punycode(raw, normalized):
    cfg = production(PUBLIC_URL=raw)
    config.validate(cfg)
    assert cfg["PUBLIC_URL"] == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://app.example.com",
        "http://",
        "http://user:pw@app.example.com",
        "https://app.example.com/?x=1",
        "http://exa mple.com",
        "http://a..b",
    ],
)
def test_bad_public_url_names_the_setting(raw):
    with pytest.raises(config.ConfigError) as info:
        config.validate(production(PUBLIC_URL=raw))
    assert "PUBLIC_URL" in str(info.value)


@pytest.mark.parametrize("secret", ["SESSION_SIGNING_KEY", "ADMIN_API_TOKEN", "CRON_TOKEN"])
def test_plain_http_production_still_refuses_weak_secrets(secret):
    with pytest.raises(config.ConfigError) as info:
        config.validate(production(PUBLIC_URL="http://myapp.duckdns.org", **{secret: "changeme"}))
    assert secret in str(info.value)


def test_display_url_is_unicode():
    assert config.display_url("http://xn--e1aarfksbg.xn--p1ai:8080/app?x=1") == "http://телемост.рф:8080/app?x=1"
    assert config.display_url("https://apps.example.com/x") == "https://apps.example.com/x"


def test_handler_urls_are_built_from_the_punycode_host(tmp_path):
    application = create_app(make_config(tmp_path, PUBLIC_URL="http://телемост.рф/app"))
    try:
        settings = application.extensions["services"].portals.settings
        assert settings.public_url == "http://xn--e1aarfksbg.xn--p1ai/app"
        result = application.test_cli_runner().invoke(args=["check-config"])
        assert result.exit_code == 0
        assert "public_url=http://телемост.рф/app" in result.output
    finally:
        application.extensions["db"].dispose()
