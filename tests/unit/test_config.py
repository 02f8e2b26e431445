"""Start-up validation of the configuration."""

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
            "PUBLIC_URL": "https://app.example.com",
        }
    )
    cfg.update(overrides)
    return cfg


def test_good_production_config_passes():
    config.validate(production())


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"SESSION_SIGNING_KEY": ""}, "SESSION_SIGNING_KEY"),
        ({"CRON_TOKEN": "short"}, "CRON_TOKEN"),
        ({"ADMIN_API_TOKEN": "changeme"}, "ADMIN_API_TOKEN"),
        ({"TOKEN_ENCRYPTION_KEY": ""}, "TOKEN_ENCRYPTION_KEY"),
        ({"TOKEN_ENCRYPTION_KEY": "not-a-key"}, "TOKEN_ENCRYPTION_KEY"),
        ({"ALLOW_LOOPBACK_PORTALS": True}, "ALLOW_LOOPBACK_PORTALS"),
        ({"PUBLIC_URL": ""}, "PUBLIC_URL"),  # plain http:// is allowed (tests/legacy/test_public_url.py)
        ({"BITRIX24_CLIENT_SECRET": ""}, "BITRIX24_CLIENT_SECRET"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
        ({"METRICS_ALLOW": "127.0.0.1,localhost"}, "METRICS_ALLOW"),
        ({"TRUSTED_PROXIES": -1}, "TRUSTED_PROXIES"),
        ({"TRUSTED_PROXIES": 9}, "TRUSTED_PROXIES"),
        ({"AUTH_THROTTLE_ATTEMPTS": 0}, "AUTH_THROTTLE_ATTEMPTS"),
    ],
)
def test_weak_production_config_names_the_setting(overrides, names):
    with pytest.raises(config.ConfigError) as info:
        config.validate(production(**overrides))
    assert names in str(info.value)


def test_environment_casts():
    env = {"REFRESH_CONCURRENCY": "32", "ALLOW_LOOPBACK_PORTALS": "yes", "HTTP_TIMEOUT_SECONDS": "2.5"}
    parsed = config.from_environ(env)
    assert parsed == {"REFRESH_CONCURRENCY": 32, "ALLOW_LOOPBACK_PORTALS": True, "HTTP_TIMEOUT_SECONDS": 2.5}
    with pytest.raises(config.ConfigError):
        config.from_environ({"REFRESH_CONCURRENCY": "many"})


def test_web_settings_from_the_environment():
    env = {
        "TRUSTED_PROXIES": "0",
        "METRICS_ALLOW": "10.0.0.0/8, ::1",
        "AUTH_THROTTLE_ATTEMPTS": "5",
        "AUTH_THROTTLE_WINDOW_SECONDS": "60",
        "METRICS_TOKEN": " t " + "x" * 40,
    }
    parsed = config.from_environ(env)
    assert parsed == {
        "TRUSTED_PROXIES": 0,
        "METRICS_ALLOW": "10.0.0.0/8, ::1",
        "AUTH_THROTTLE_ATTEMPTS": 5,
        "AUTH_THROTTLE_WINDOW_SECONDS": 60,
        "METRICS_TOKEN": "t " + "x" * 40,
    }
    config.validate(production(**parsed))
    assert (config.defaults()["TRUSTED_PROXIES"], config.defaults()["METRICS_ALLOW"]) == (1, "127.0.0.1,::1")


def test_create_app_refuses_bad_config(tmp_path):
    with pytest.raises(config.ConfigError):
        create_app(make_config(tmp_path, SESSION_TTL_SECONDS=3600))


def test_check_config_command(app):
    result = app.test_cli_runner().invoke(args=["check-config"])
    assert result.exit_code == 0 and "configuration ok: APP_ENV=testing, database=sqlite" in result.output


def test_oauth_method_is_get_or_post():
    config.validate(production(BITRIX24_OAUTH_METHOD="post"))
    with pytest.raises(config.ConfigError):
        config.validate(production(BITRIX24_OAUTH_METHOD="PUT"))
