"""Settings read from the environment (and `.env` through python-dotenv), validated at start-up.

Every setting lives here with its cast and default; `.env.example` documents each one. A production
configuration with a missing or weak secret refuses to start and names the setting.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import idna
from cryptography.fernet import Fernet

from models.webhook import InvalidWebhook, parse_webhook_url

ROOT = Path(__file__).resolve().parent

ENVIRONMENTS = ("development", "production", "testing")
SECRET_SETTINGS = ("SESSION_SIGNING_KEY", "ADMIN_API_TOKEN", "CRON_TOKEN", "BITRIX24_CLIENT_SECRET")
MIN_SECRET_LENGTH = 32
WEAK_SECRETS = {"", "change-me", "changeme", "secret", "dev", "test", "password", "admin"}


# Settings of the old tools (a Telemost app, an Open Lines bot, two token workers) read as the new ones, so
# a `.env` brought over from them works. The values mean the same thing; only the names changed.
ALIASES = {
    "SECRET_KEY": "SESSION_SIGNING_KEY",  # the old Flask session key; ours signs the iframe's bearer tokens
    "FLASK_ENV": "APP_ENV",
    "LOGGING_LEVEL": "LOG_LEVEL",
    "SCRIPT_NAME": "BASE_PATH",  # the Telemost app's path prefix
    "API_SECRET_TOKEN": "ADMIN_API_TOKEN",  # the bot's admin token (X-API-Token / ?token=)
}
# The old Telemost app's full Yandex callback URL; ours is {PUBLIC_URL}/auth/yandex/callback.
YANDEX_REDIRECT_ALIAS = "YANDEX_REDIRECT_URI"
YANDEX_CALLBACK_PATH = "/auth/yandex/callback"

log = logging.getLogger(__name__)


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
        # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host/-Prefix (and
        # X-Script-Name) are believed: 1 = the nginx of nginx-integration.conf; 0 = none, ignore them.
        "TRUSTED_PROXIES": 1,
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
        # Single-portal webhook mode: an incoming webhook https://<portal>/rest/<user>/<code>/ of the one
        # portal the app serves; its server-side REST calls go through it (models/webhook.py).
        "BITRIX24_WEBHOOK_URL": "",
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
        "PORTAL_API_TOKEN_TTL_DAYS": 90,
        # /metrics: a bearer token for Prometheus, and client addresses (or networks) allowed without one.
        "METRICS_TOKEN": "",
        "METRICS_ALLOW": "127.0.0.1,::1",
        # Failed X-API-Token / X-Cron-Token / metrics token attempts per client address and window, then 429.
        "AUTH_THROTTLE_ATTEMPTS": 10,
        "AUTH_THROTTLE_WINDOW_SECONDS": 300,
        # Requests per client address and window to each token-protected endpoint group (admin API, dialogs
        # API, cron tasks, metrics), then 429 rate_limited; 0 turns the limit off.
        "RATE_LIMIT_REQUESTS": 300,
        "RATE_LIMIT_WINDOW_SECONDS": 60,
    }


def _alias_value(old: str, raw: str) -> str:
    value = raw.strip()
    if old == "SCRIPT_NAME" and value not in ("", "/"):
        return "/" + value.strip("/")  # the old app took "/telemost-app/" too
    if old == "SCRIPT_NAME":
        return ""
    if old == "LOGGING_LEVEL":
        return value.upper()
    return value


def _public_url_from_redirect(redirect_uri: str, prefix: str) -> str:
    """The app's public address an old YANDEX_REDIRECT_URI implies: ours minus the callback path, else the
    old URL's origin plus the old path prefix (SCRIPT_NAME / BASE_PATH)."""
    parts = urlsplit(redirect_uri.strip())
    path = parts.path.rstrip("/")
    path = path[: -len(YANDEX_CALLBACK_PATH)] if path.endswith(YANDEX_CALLBACK_PATH) else prefix
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def legacy_aliases(environ: Mapping[str, str]) -> tuple[dict, list[tuple[str, str]]]:
    """Values the old tools' settings give (by new name) and the (old, new) names used; refuses conflicts.

    A conflict is an old name and its new name both set to different values: which one was meant cannot
    be guessed, so start-up stops and names both.
    """
    out: dict = {}
    used: list[tuple[str, str]] = []
    for old, new in ALIASES.items():
        raw = environ.get(old)
        if raw is None or raw.strip() == "":
            continue
        value = _alias_value(old, raw)
        current = environ.get(new)
        if current is not None and current.strip() != "":
            if _alias_value(old, current) != value:
                raise ConfigError(f"{old} (old name) and {new} are both set, to different values: keep only {new}")
            used.append((old, new))
            continue
        out[new] = value
        used.append((old, new))
    redirect = (environ.get(YANDEX_REDIRECT_ALIAS) or "").strip()
    if redirect:
        prefix = out.get("BASE_PATH") or (environ.get("BASE_PATH") or "").strip()
        implied = _public_url_from_redirect(redirect, prefix)
        if urlsplit(redirect).scheme not in ("http", "https") or not urlsplit(redirect).netloc:
            raise ConfigError(
                f"{YANDEX_REDIRECT_ALIAS} (old name) must be a full URL, e.g. "
                f"https://apps.example.com{YANDEX_CALLBACK_PATH}"
            )
        current = (environ.get("PUBLIC_URL") or "").strip()
        if current and urlsplit(current).netloc.lower() != urlsplit(implied).netloc.lower():
            raise ConfigError(
                f"{YANDEX_REDIRECT_ALIAS} (old name) and PUBLIC_URL name different hosts: keep only "
                "PUBLIC_URL (the Yandex callback is PUBLIC_URL + /auth/yandex/callback)"
            )
        if not current:
            out["PUBLIC_URL"] = implied
        used.append((YANDEX_REDIRECT_ALIAS, "PUBLIC_URL"))
    return out, used


def log_aliases(cfg: Mapping) -> None:
    """One start-up line per old setting in use, naming the new one (never the value)."""
    for old, new in cfg.get("LEGACY_ALIASES") or ():
        if old == YANDEX_REDIRECT_ALIAS:
            log.warning(
                "setting %s is an old name: the app now reads PUBLIC_URL and calls Yandex back at "
                "PUBLIC_URL%s (register that Callback URI at oauth.yandex.ru)",
                old,
                YANDEX_CALLBACK_PATH,
            )
        else:
            log.warning("setting %s is an old name: read as %s (rename it in .env)", old, new)


def from_environ(environ: Mapping[str, str] | None = None) -> dict:
    """Read every known setting from the environment with its cast (old tools' names as aliases)."""
    env = os.environ if environ is None else environ
    aliased, used = legacy_aliases(env)
    if environ is None and "SCRIPT_NAME" in os.environ:
        # gunicorn strips an environment SCRIPT_NAME from every path and refuses paths outside it (/health on
        # 127.0.0.1, cron): the prefix is applied once, by the app (BASE_PATH), never a second time.
        os.environ.pop("SCRIPT_NAME")
    env = {**env, **aliased}
    base = defaults()
    out: dict = {"LEGACY_ALIASES": tuple(used)} if used else {}
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


def address_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse a comma-separated list of addresses or CIDR networks (METRICS_ALLOW); raises ValueError."""
    return [ipaddress.ip_network(item.strip(), strict=False) for item in value.split(",") if item.strip()]


def fernet_keys(value: str) -> list[str]:
    """Split TOKEN_ENCRYPTION_KEY (comma-separated, newest first) into keys."""
    return [k.strip() for k in value.split(",") if k.strip()]


def normalize_public_url(value: str) -> str:
    """PUBLIC_URL as the app builds URLs from it: http(s), host in punycode (IDN allowed), no query or slash
    at the end; raises ConfigError naming the setting."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("PUBLIC_URL must be the app's http:// or https:// address, e.g. https://apps.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("PUBLIC_URL must not contain user info, a query or a fragment")
    host = parts.hostname.rstrip(".")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError("PUBLIC_URL has a bad port") from exc
    try:
        ipaddress.ip_address(host)
        ascii_host = f"[{host}]" if ":" in host else host
    except ValueError:
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ConfigError(f"PUBLIC_URL has a host name that is not valid: {exc}") from exc
    netloc = f"{ascii_host}:{port}" if port else ascii_host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def display_url(url: str) -> str:
    """A URL with its host readable (Unicode instead of punycode), for people: printed lines, the UI."""
    parts = urlsplit(url or "")
    if not parts.hostname or "xn--" not in parts.hostname:
        return url
    try:
        host = idna.decode(parts.hostname)
    except idna.IDNAError:
        return url
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
    if not 1 <= int(cfg["PORTAL_API_TOKEN_TTL_DAYS"]) <= 3650:
        raise ConfigError("PORTAL_API_TOKEN_TTL_DAYS must be between 1 and 3650")
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
    if not 0 <= int(cfg["TRUSTED_PROXIES"]) <= 5:
        raise ConfigError("TRUSTED_PROXIES must be between 0 and 5 (the number of proxies in front of the app)")
    try:
        address_networks(str(cfg.get("METRICS_ALLOW") or ""))
    except ValueError as exc:
        raise ConfigError(f"METRICS_ALLOW must list IP addresses or networks: {exc}") from exc
    if int(cfg["AUTH_THROTTLE_ATTEMPTS"]) < 1 or int(cfg["AUTH_THROTTLE_WINDOW_SECONDS"]) < 1:
        raise ConfigError("AUTH_THROTTLE_ATTEMPTS and AUTH_THROTTLE_WINDOW_SECONDS must be at least 1")
    if int(cfg["RATE_LIMIT_REQUESTS"]) < 0 or int(cfg["RATE_LIMIT_WINDOW_SECONDS"]) < 1:
        raise ConfigError("RATE_LIMIT_REQUESTS must be 0 (off) or more and RATE_LIMIT_WINDOW_SECONDS at least 1")
    if "*" in [o.strip() for o in str(cfg.get("CORS_ORIGINS") or "").split(",")]:
        raise ConfigError("CORS_ORIGINS must list origins (https://crm.example.ru), not '*'")
    base_path = cfg.get("BASE_PATH") or ""
    if base_path and (not base_path.startswith("/") or base_path.endswith("/")):
        raise ConfigError("BASE_PATH must start with '/' and not end with '/', e.g. /telemost-app")

    if str(cfg.get("BITRIX24_WEBHOOK_URL") or "").strip():
        try:
            webhook = parse_webhook_url(
                str(cfg["BITRIX24_WEBHOOK_URL"]), allow_loopback=bool(cfg.get("ALLOW_LOOPBACK_PORTALS"))
            )
        except InvalidWebhook as exc:
            # Never the value: it holds the webhook's code.
            raise ConfigError(
                f"BITRIX24_WEBHOOK_URL {exc}, e.g. https://yourcompany.bitrix24.ru/rest/1/<code>/"
            ) from None
        cfg["BITRIX24_WEBHOOK_URL"] = webhook.url

    if cfg.get("PUBLIC_URL"):
        # Handler URLs given to Bitrix24 and the Yandex callback are built from it: ASCII (punycode) only.
        cfg["PUBLIC_URL"] = normalize_public_url(str(cfg["PUBLIC_URL"]))

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
        if not cfg.get("PUBLIC_URL"):
            # Plain http:// is allowed (a DuckDNS or own domain without TLS); `flask doctor` warns about it.
            problems.append("PUBLIC_URL must be the app's public address (https://, or http:// without TLS)")
        if cfg.get("ALLOW_LOOPBACK_PORTALS"):
            problems.append("ALLOW_LOOPBACK_PORTALS must be off in production")
        if cfg.get("METRICS_TOKEN"):
            _check_secret(cfg, "METRICS_TOKEN", problems)
    else:
        for name in ("SESSION_SIGNING_KEY",):
            if not cfg.get(name):
                problems.append(f"{name} is missing")
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
