"""Single-portal webhook mode: the incoming webhook of BITRIX24_WEBHOOK_URL.

A company that runs the app for its one portal may give it an incoming webhook
(`https://<portal>/rest/<user>/<code>/`, spec §3.1, §7.4): server-side REST calls then go through that
URL, which needs no token and no refresh. The app is still installed as an app (iframe, events, bot and
placements need app context), and every iframe open is still verified against that portal.

The code in the URL is a password: it never appears in a message, a repr or a log line (models/logs.py
redacts `/rest/<user>/<code>/` wherever it shows up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from models.hosts import InvalidHost, normalize_host

# /rest/<user id>/<code>/ — Bitrix24's codes are 16 lower-case letters and digits; a little slack either way.
_PATH = re.compile(r"/rest/(?P<user>[1-9][0-9]{0,9})/(?P<code>[A-Za-z0-9_]{8,64})/?")
# Methods that need the app's own OAuth context: a webhook gets WRONG_AUTH_TYPE for event.* and
# placement.* (§4.7), and the app's bot answers only its own app (§4.4, §4.6: webhooks need a CLIENT_ID).
APP_CONTEXT_PREFIXES = ("event.", "placement.", "imbot.", "imopenlines.bot.", "app.")


class InvalidWebhook(ValueError):
    """BITRIX24_WEBHOOK_URL is not an incoming webhook URL; str(exc) says why, never the code."""


class OtherPortal(InvalidHost):
    """A request names a portal other than the webhook's: the app serves only that one."""


@dataclass(frozen=True)
class Webhook:
    """A validated incoming webhook: `url` ends with `/`, `host` is normalised like a portal's domain."""

    url: str = field(repr=False)
    host: str
    user_id: int

    def __repr__(self) -> str:
        return f"Webhook(host={self.host!r}, user_id={self.user_id})"


def needs_app_context(method: str) -> bool:
    """True for methods a webhook may not call for the app (events, placements, the app's bot)."""
    return method.strip().lower().startswith(APP_CONTEXT_PREFIXES)


def parse_webhook_url(raw: str, *, allow_loopback: bool = False) -> Webhook:
    """Validate an incoming webhook URL: https (http only for a loopback host when allowed), a portal host,
    path `/rest/<digits>/<code>/`, nothing else; raises InvalidWebhook."""
    value = (raw or "").strip()
    try:
        parts = urlsplit(value)
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise InvalidWebhook("is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidWebhook("must be a full https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidWebhook("must not contain user info, a query or a fragment")
    try:
        host = normalize_host(parts.netloc, allow_loopback=allow_loopback)
    except InvalidHost as exc:
        raise InvalidWebhook(f"has a host that is not a portal host ({exc})") from None
    loopback = allow_loopback and (parts.hostname in ("localhost", "127.0.0.1", "::1"))
    if parts.scheme != "https" and not loopback:
        raise InvalidWebhook("must use https (http only for a loopback portal with ALLOW_LOOPBACK_PORTALS)")
    match = _PATH.fullmatch(parts.path)
    if match is None:
        raise InvalidWebhook("must have the path /rest/<user id>/<code>/ of an incoming webhook")
    return Webhook(f"{parts.scheme}://{host}/rest/{match['user']}/{match['code']}/", host, int(match["user"]))


def webhook_from_config(cfg) -> Webhook | None:
    """The webhook of BITRIX24_WEBHOOK_URL (validated at start-up by config.validate), or None."""
    raw = str(cfg.get("BITRIX24_WEBHOOK_URL") or "").strip()
    if not raw:
        return None
    return parse_webhook_url(raw, allow_loopback=bool(cfg.get("ALLOW_LOOPBACK_PORTALS")))
