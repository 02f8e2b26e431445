"""The one logging set-up, with a filter that keeps OAuth secrets out of every log line."""

from __future__ import annotations

import logging
import re
import sys

SECRET_KEYS = (
    "AUTH_ID",
    "REFRESH_ID",
    "access_token",
    "refresh_token",
    "application_token",
    "APPLICATION_TOKEN",
    "client_secret",
    "auth",
    "code",
    "X-API-Token",
    "X-Cron-Token",
    "token",
    "ticket",
    "state",
)
_KEYS = "|".join(re.escape(k) for k in sorted(SECRET_KEYS, key=len, reverse=True))
# key=value (query strings, form bodies), "key": "value" (JSON), key[...]=value (PHP brackets),
# auth[access_token]=… and Authorization headers.
_PATTERNS = [
    re.compile(rf"((?:^|[?&\s,;{{(\[])(?:\w+\[)?(?:{_KEYS})\]?=)([^&\s,;'\"}}]+)", re.IGNORECASE),
    re.compile(rf"((?:['\"])(?:{_KEYS})(?:['\"])\s*:\s*['\"])([^'\"]+)", re.IGNORECASE),
    re.compile(r"((?:Authorization|authorization)['\"]?\s*[:=]\s*['\"]?(?:Bearer|OAuth|Basic)\s+)([^\s'\"]+)"),
]
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Replace secret values in a string."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


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
