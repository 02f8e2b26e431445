"""The old tools' settings (.env brought over) read as the new ones; conflicts stop start-up."""

from __future__ import annotations

import logging

import pytest

import config
from app import create_app
from tests.conftest import make_config

SECRET = "old-flask-secret-key-" + "x" * 24


@pytest.mark.parametrize(
    ("old", "value", "new", "expected"),
    [
        ("SECRET_KEY", SECRET, "SESSION_SIGNING_KEY", SECRET),
        ("FLASK_ENV", "development", "APP_ENV", "development"),
        ("LOGGING_LEVEL", "debug", "LOG_LEVEL", "DEBUG"),
        ("SCRIPT_NAME", "/telemost-app/", "BASE_PATH", "/telemost-app"),
        ("API_SECRET_TOKEN", "bot-admin-token-" + "y" * 24, "ADMIN_API_TOKEN", "bot-admin-token-" + "y" * 24),
        (
            "YANDEX_REDIRECT_URI",
            "https://apps.example.com/telemost-app/auth/yandex/callback",
            "PUBLIC_URL",
            "https://apps.example.com/telemost-app",
        ),
    ],
)
def test_each_alias_is_read_as_the_new_setting(old, value, new, expected):
    parsed = config.from_environ({old: value})
    assert parsed[new] == expected
    assert parsed["LEGACY_ALIASES"] == ((old, new),)


def test_old_yandex_callback_elsewhere_gives_origin_and_old_prefix():
    parsed = config.from_environ(
        {"YANDEX_REDIRECT_URI": "https://apps.example.com/telemost/oauth/callback", "SCRIPT_NAME": "/telemost"}
    )
    assert parsed["PUBLIC_URL"] == "https://apps.example.com/telemost"


def test_alias_equal_to_its_new_name_is_no_conflict():
    parsed = config.from_environ({"LOGGING_LEVEL": "warning", "LOG_LEVEL": "WARNING"})
    assert parsed["LOG_LEVEL"] == "WARNING"
    assert parsed["LEGACY_ALIASES"] == (("LOGGING_LEVEL", "LOG_LEVEL"),)


def test_no_alias_no_marker():
    assert "LEGACY_ALIASES" not in config.from_environ({"LOG_LEVEL": "INFO"})


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SECRET_KEY": SECRET, "SESSION_SIGNING_KEY": "z" * 40}, ("SECRET_KEY", "SESSION_SIGNING_KEY")),
        ({"FLASK_ENV": "development", "APP_ENV": "production"}, ("FLASK_ENV", "APP_ENV")),
        ({"SCRIPT_NAME": "/a", "BASE_PATH": "/b"}, ("SCRIPT_NAME", "BASE_PATH")),
        ({"API_SECRET_TOKEN": "a" * 40, "ADMIN_API_TOKEN": "b" * 40}, ("API_SECRET_TOKEN", "ADMIN_API_TOKEN")),
        (
            {
                "YANDEX_REDIRECT_URI": "https://old.example.com/auth/yandex/callback",
                "PUBLIC_URL": "https://new.example.com",
            },
            ("YANDEX_REDIRECT_URI", "PUBLIC_URL"),
        ),
    ],
)
def test_conflict_stops_start_up_naming_both(env, names):
    with pytest.raises(config.ConfigError) as info:
        config.from_environ(env)
    message = str(info.value)
    assert all(name in message for name in names)
    assert all(value not in message for value in env.values())  # values may be secrets


def test_start_up_logs_one_line_per_alias_without_the_value(tmp_path, caplog):
    token = "bot-admin-token-" + "q" * 30
    parsed = config.from_environ({"API_SECRET_TOKEN": token, "SECRET_KEY": SECRET})
    cfg = make_config(tmp_path)
    cfg.update(parsed)
    with caplog.at_level(logging.WARNING, logger="config"):
        application = create_app(cfg)
    application.extensions["db"].dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "config"]
    assert lines == [
        "setting SECRET_KEY is an old name: read as SESSION_SIGNING_KEY (rename it in .env)",
        "setting API_SECRET_TOKEN is an old name: read as ADMIN_API_TOKEN (rename it in .env)",
    ]
    assert application.config["ADMIN_API_TOKEN"] == token
    assert application.config["SESSION_SIGNING_KEY"] == SECRET
    assert not any(token in text or SECRET in text for text in caplog.text.splitlines())


def test_script_name_is_taken_away_from_gunicorn(monkeypatch):
    monkeypatch.setenv("SCRIPT_NAME", "/telemost-app")
    parsed = config.from_environ()
    assert parsed["BASE_PATH"] == "/telemost-app"
    import os

    assert "SCRIPT_NAME" not in os.environ


def test_env_example_lists_the_aliases():
    text = (config.ROOT / ".env.example").read_text(encoding="utf-8")
    block = text[text.index("# --- settings of the old tools") :]
    for old, new in [*config.ALIASES.items(), ("YANDEX_REDIRECT_URI", "PUBLIC_URL")]:
        assert f"#   {old} → {new}" in block
