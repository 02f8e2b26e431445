"""The one logging set-up, with a filter that keeps OAuth secrets out of every log line."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from urllib.parse import unquote_plus

SECRET_KEYS = (
    "AUTH_ID",
    "REFRESH_ID",
    "access_token",
    "refresh_token",
    "application_token",
    "client_secret",
    "id_token",
    "auth",
    "code",
    "X-API-Token",
    "X-Cron-Token",
    "token",
    "ticket",
    "state",
    "password",
)
_SECRET_NAMES = frozenset(k.lower() for k in SECRET_KEYS)
REDACTED = "[REDACTED]"

# name=value pairs as in query strings, form bodies and `key=value` log text. A name is what a server
# would parse: it may be percent-encoded (`%74oken`, `auth%5Bapplication_token%5D`) or carry PHP
# brackets (`auth[access_token]`); it is decoded before it is matched, never matched as written.
# Names are bounded in length so that a long line without "=" costs linear time, not quadratic.
_PAIR = re.compile(r"(?<![^\s?&;,{(\[])(?P<name>[^\s&?=;,'\"{}()<>]{1,200})=(?P<value>[^&\s,;'\"}?]*)")
# "name": "value" and 'name': 'value' (JSON, Python reprs), or a bare value ("code": 123456); the name
# may use JSON escapes (\u0074oken).
_QUOTED = re.compile(
    r"""(?P<q>['"])(?P<name>(?:(?!(?P=q))[^\\]|\\.){1,80})(?P=q)\s*:\s*"""
    r"""(?:(?P<vq>['"])(?P<value>(?:(?!(?P=vq))[^\\]|\\.){0,8192})(?P=vq)|(?P<bare>[^\s,}\]'"]+))"""
)
# Header lines and reprs (`X-Cron-Token: …`, `authorization: bearer …`): HTTP header names and auth
# schemes are case-insensitive, and curl -v or a proxy's debug log prints them in any case.
_AUTH_HEADER = re.compile(
    r"(?i)((?:authorization|x-api-token|x-cron-token)['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|oauth|basic)\s+)?)"
    r"([^\s'\",}]+)"
)
_BRACKET_PART = re.compile(r"[^\[\]]+")
# An incoming webhook's URL carries its secret in the path: /rest/<user>/<code>/ (BITRIX24_WEBHOOK_URL).
# Slashes may come JSON-escaped (`\/rest\/1\/…`); percent-encoded URLs are decoded by _redact_pair.
_WEBHOOK_PATH = re.compile(r"(?i)(\\?/rest\\?/[0-9]{1,10}\\?/)([^/\\\s?#&'\",;]+)")


def _decoded(name: str) -> str:
    # Decode until stable (bounded): `%2574oken` is `%74oken` to one decoder and `token` to the next.
    for _ in range(3):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name


@functools.lru_cache(maxsize=2048)
def is_secret_name(name: str) -> bool:
    """True when a field name, once decoded, names a secret (`auth[access_token]` by its last part)."""
    parts = _BRACKET_PART.findall(_decoded(name).strip())
    return bool(parts) and parts[-1].strip().lower() in _SECRET_NAMES


def _json_name(raw: str) -> str:
    try:
        return json.loads(f'"{raw}"')
    except ValueError:
        return raw


def _redact_quoted(match: re.Match) -> str:
    if not is_secret_name(_json_name(match["name"])):
        return match[0]
    value = "value" if match["vq"] else "bare"
    return match[0][: match.start(value) - match.start()] + REDACTED + (match["vq"] or "")


def _redact_pair(match: re.Match) -> str:
    if is_secret_name(match["name"]):
        return f"{match['name']}={REDACTED}"
    # A URL carried percent-encoded in a value (`?next=%2Fcb%3Ftoken%3D…`, a Referer's `redirect=`):
    # the secret is one decoding away, so the whole value goes.
    value = match["value"]
    if "%" in value:
        decoded = _decoded(value)
        if decoded != value and redact(decoded) != decoded:
            return f"{match['name']}={REDACTED}"
    return match[0]


def redact(text: str) -> str:
    """Replace secret values in a string (query strings, forms, JSON, reprs, Authorization headers, webhook
    codes in URL paths)."""
    text = _WEBHOOK_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PAIR.sub(_redact_pair, text)
    text = _QUOTED.sub(_redact_quoted, text)
    return _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Renders each record's message once and strips secrets from it (and from exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the rendered message and any exception text; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# Loggers with handlers of their own (gunicorn's access log prints query strings such as ?token=…).
OWN_HANDLER_LOGGERS = ("gunicorn.access", "gunicorn.error")


def configure_logging(level: str = "INFO") -> None:
    """Install one stderr handler with the redacting filter on the root logger (idempotent)."""
    for name in OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_b24_redacting", False):
            root.setLevel(level.upper())
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._b24_redacting = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # werkzeug and urllib3 log their own lines through handlers on the root: the filter sits on the
    # handler, so every record reaching stderr passes through it.
