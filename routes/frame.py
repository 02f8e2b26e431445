"""Response headers for pages that render inside a Bitrix24 portal's iframe."""

from __future__ import annotations

from flask import make_response

from models.hosts import InvalidHost, normalize_host


def portal_origin(fields: dict, portals) -> str | None:
    """The portal origin allowed to frame the page: PROTOCOL + validated DOMAIN of the POST."""
    try:
        host = normalize_host(fields.get("DOMAIN"), allow_loopback=portals.settings.allow_loopback)
    except InvalidHost:
        return None
    # Plain http only for loopback sandbox portals: production refuses ALLOW_LOOPBACK_PORTALS, so its
    # frame-ancestors never names an http:// origin, whatever PROTOCOL the POST claims.
    plain_http = portals.settings.allow_loopback and str(fields.get("PROTOCOL", "1")) == "0"
    return f"{'http' if plain_http else 'https'}://{host}"


def verified_origin(portal, fields: dict, portals) -> str:
    """The origin of a verified portal: https, or http only for loopback sandbox portals."""
    plain_http = portals.settings.allow_loopback and str(fields.get("PROTOCOL", "1")) == "0"
    return f"{'http' if plain_http else 'https'}://{portal.domain}"


def frame_headers(body, status: int, origin: str | None):
    """Attach a CSP whose frame-ancestors names only the verified portal."""
    response = make_response(body, status)
    portal = f" {origin}" if origin else ""
    # The frame SDK may call the portal's REST API straight from the browser, hence connect-src.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"connect-src 'self'{portal}; object-src 'none'; base-uri 'none'; frame-ancestors 'self'{portal}"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
