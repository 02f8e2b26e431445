"""Settings read from the environment (and `.env` through python-dotenv), validated at start-up.

Every setting lives here with its cast and default; `.env.example` documents each one. A production
configuration with a missing or weak secret refuses to start and names the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent

ENVIRONMENTS = ("development", "production", "testing")
SECRET_SETTINGS = ("SESSION_SIGNING_KEY", "ADMIN_API_TOKEN", "CRON_TOKEN", "BITRIX24_CLIENT_SECRET")
MIN_SECRET_LENGTH = 32
WEAK_SECRETS = {"", "change-me", "changeme", "secret", "dev", "test", "password", "admin"}


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, value: str | None, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from exc


def _float(name: str, value: str | None, default: float) -> float:
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc


def defaults() -> dict:
    """Settings that are safe to default; secrets have no default on purpose."""
    return {
        "APP_ENV": "production",
        "SERVICE_NAME": "b24-telemost",
        "PUBLIC_URL": "",
        "BASE_PATH": "",
        "LOG_LEVEL": "INFO",
        "SESSION_SIGNING_KEY": "",
        "SESSION_TTL_SECONDS": 900,
        "TOKEN_ENCRYPTION_KEY": "",
        "ADMIN_API_TOKEN": "",
        "CRON_TOKEN": "",
        "DATABASE_PATH": str(ROOT / "data" / "app.db"),
        "DATABASE_URL": "",
        # None = on in development/testing, off in production (several workers must not race to
        # migrate; deploys run `flask db upgrade` once).
        "AUTO_MIGRATE": None,
        "BITRIX24_CLIENT_ID": "",
        "BITRIX24_CLIENT_SECRET": "",
        "BITRIX24_OAUTH_URL": "https://oauth.bitrix.info",
        "BITRIX24_OAUTH_METHOD": "GET",
        "ALLOW_LOOPBACK_PORTALS": False,
        "BOT_CODE": "telemost_openlines_bot",
        "BOT_NAME": "Телемост-бот",
        "YANDEX_CLIENT_ID": "",
        "YANDEX_CLIENT_SECRET": "",
        "YANDEX_OAUTH_URL": "https://oauth.yandex.ru",
        "YANDEX_LOGIN_URL": "https://login.yandex.ru",
        "YANDEX_OAUTH_TOKEN": "",
        "TELEMOST_API_URL": "https://cloud-api.yandex.net/v1/telemost-api",
        "AMOCRM_CLIENT_ID": "",
        "AMOCRM_CLIENT_SECRET": "",
        "AMOCRM_REDIRECT_URI": "",
        "AMOCRM_BASE_URL": "https://{subdomain}.amocrm.ru",
        "AMOCRM_AUTHORIZE_URL": "https://www.amocrm.ru/oauth",
        "HTTP_TIMEOUT_SECONDS": 10.0,
        "REFRESH_AHEAD_SECONDS": 600,
        "REFRESH_RECENT_USE_SECONDS": 7 * 24 * 3600,
        "REFRESH_TOKEN_RENEW_DAYS": 30,
        "REFRESH_CONCURRENCY": 16,
        "REFRESH_BATCH_SIZE": 500,
        "REFRESH_BUDGET_SECONDS": 240.0,
        "REFRESH_MAX_ATTEMPTS": 3,
        "REFRESH_BACKOFF_SECONDS": 0.5,
        "REFRESH_LEASE_SECONDS": 120,
        "REFRESH_FAILURES_BEFORE_REAUTH": 2,
        "TOKEN_HISTORY_KEEP": 5,
        "CORS_ORIGINS": "",
        # Open Lines bot (models/openlines): events older than this (by their `ts`) are refused as replays.
        "BOT_EVENT_MAX_AGE_SECONDS": 900,
        "BOT_BACKGROUND_WORKER": True,
        "BOT_LEASE_SECONDS": 120,
        "BOT_MAX_ATTEMPTS": 12,
        "BOT_BACKOFF_SECONDS": 30.0,
        "BOT_BATCH_SIZE": 200,
        "BOT_TIMEZONE": "Europe/Moscow",
        "BOT_HISTORY_CHECK_SECONDS": 600,
        "BOT_INBOX_KEEP_DAYS": 7,
    }


def from_environ(environ: Mapping[str, str] | None = None) -> dict:
    """Read every known setting from the environment with its cast."""
    env = os.environ if environ is None else environ
    base = defaults()
    out: dict = {}
    for name, default in base.items():
        raw = env.get(name)
        if raw is None:
            continue
        if isinstance(default, bool) or name == "AUTO_MIGRATE":
            out[name] = _bool(raw, default)
        elif isinstance(default, int):
            out[name] = _int(name, raw, default)
        elif isinstance(default, float):
            out[name] = _float(name, raw, default)
        else:
            out[name] = raw.strip()
    return out


def load_dotenv_file() -> None:
    """Load `.env` from the project root into os.environ without overriding real variables."""
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env", override=False)


def fernet_keys(value: str) -> list[str]:
    """Split TOKEN_ENCRYPTION_KEY (comma-separated, newest first) into keys."""
    return [k.strip() for k in value.split(",") if k.strip()]


def _check_secret(cfg: Mapping, name: str, problems: list[str]) -> None:
    value = str(cfg.get(name) or "")
    if value.lower() in WEAK_SECRETS:
        problems.append(f"{name} is missing")
    elif len(value) < MIN_SECRET_LENGTH:
        problems.append(f"{name} is too short (at least {MIN_SECRET_LENGTH} characters)")


def validate(cfg: dict) -> None:
    """Refuse configurations that would run insecurely or not at all."""
    env = cfg.get("APP_ENV")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    if cfg.get("AUTO_MIGRATE") is None:
        cfg["AUTO_MIGRATE"] = env != "production"
    if not 60 <= int(cfg["SESSION_TTL_SECONDS"]) <= 900:
        raise ConfigError("SESSION_TTL_SECONDS must be between 60 and 900 (DESIGN: exp ≤ 15 min)")
    if int(cfg["REFRESH_CONCURRENCY"]) < 1 or int(cfg["REFRESH_MAX_ATTEMPTS"]) < 1:
        raise ConfigError("REFRESH_CONCURRENCY and REFRESH_MAX_ATTEMPTS must be at least 1")
    if float(cfg["REFRESH_LEASE_SECONDS"]) < 2 * float(cfg["HTTP_TIMEOUT_SECONDS"]) + 1:
        # A lease must outlive one provider request (connect + read timeouts), or a second refresher
        # could take over while our request is still in flight.
        raise ConfigError("REFRESH_LEASE_SECONDS must be at least 2 × HTTP_TIMEOUT_SECONDS + 1")
    if float(cfg["BOT_LEASE_SECONDS"]) < 4 * float(cfg["HTTP_TIMEOUT_SECONDS"]) + 1:
        # One inbox row makes up to three REST calls (notice, hand-off, a refresh) under its lease.
        raise ConfigError("BOT_LEASE_SECONDS must be at least 4 × HTTP_TIMEOUT_SECONDS + 1")
    if str(cfg.get("BITRIX24_OAUTH_METHOD", "GET")).upper() not in ("GET", "POST"):
        raise ConfigError("BITRIX24_OAUTH_METHOD must be GET or POST")
    base_path = cfg.get("BASE_PATH") or ""
    if base_path and (not base_path.startswith("/") or base_path.endswith("/")):
        raise ConfigError("BASE_PATH must start with '/' and not end with '/', e.g. /telemost-app")

    problems: list[str] = []
    keys = fernet_keys(cfg.get("TOKEN_ENCRYPTION_KEY") or "")
    if not keys:
        problems.append("TOKEN_ENCRYPTION_KEY is missing (generate one with `make secrets`)")
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            problems.append("TOKEN_ENCRYPTION_KEY holds a value that is not a Fernet key")
            break
    if env == "production":
        for name in SECRET_SETTINGS:
            _check_secret(cfg, name, problems)
        if not cfg.get("BITRIX24_CLIENT_ID"):
            problems.append("BITRIX24_CLIENT_ID is missing")
        if not str(cfg.get("PUBLIC_URL") or "").startswith("https://"):
            problems.append("PUBLIC_URL must be the app's https:// address")
        if cfg.get("ALLOW_LOOPBACK_PORTALS"):
            problems.append("ALLOW_LOOPBACK_PORTALS must be off in production")
    else:
        for name in ("SESSION_SIGNING_KEY",):
            if not cfg.get(name):
                problems.append(f"{name} is missing")
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
