"""Pages and cookies of the connect windows (Yandex, amoCRM): confirmation, result and refusal.

The views live with their features (routes/ui.py for Yandex, routes/admin.py for amoCRM); this module
renders what they share. Words come from routes/i18n/connect.py in the language the link was made in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import make_response, render_template, request

from models.connect import ConnectLink
from models.errors import ServiceError
from routes.i18n import error_message, normalize_language, request_language, translate

NONCE_COOKIES = {"yandex": "yandex_connect_nonce", "amocrm": "amocrm_connect_nonce"}
NONCE_MAX_AGE = 1800


def link_language(link: ConnectLink | None) -> str:
    """The language of the link's creator, else the request's."""
    return normalize_language(link.lang if link else None) or request_language()


def _cookie_path(provider: str) -> str:
    return f"{request.script_root}/auth/{provider}/"


def nonce_from_request(provider: str) -> str | None:
    """The browser's nonce for this provider's connect flow (None in another browser)."""
    return request.cookies.get(NONCE_COOKIES[provider]) or None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def confirm_page(
    link: ConnectLink, *, ticket: str, nonce: str, action: str, provider_url: str, domain: str | None, secure: bool
):
    """The page that says where the account goes, with the "Connect" button; binds this browser (nonce cookie)."""
    lang = link_language(link)
    kind = f"{link.provider}_{link.scope}"
    user = f"{link.user_name} (ID {link.user_id})" if link.user_id else None
    params = {"domain": domain or "", "user": user or ""}
    body = render_template(
        "connect.html",
        lang=lang,
        ticket=ticket,
        action=action,
        domain=domain,
        user=user,
        title=translate(f"connect.title.{kind}", lang, **params),
        lead=translate(f"connect.lead.{kind}", lang, **params),
        scope=translate(f"connect.scope.{link.scope}", lang),
        t=lambda key: translate(key, lang),
    )
    response = make_response(body, 200)
    # No script at all; the form may post only here, and the redirect after it only to the provider; the page
    # is never framed, so nobody can lay it under a decoy and steal the click.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {_origin(provider_url)}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        NONCE_COOKIES[link.provider],
        nonce,
        max_age=NONCE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=secure,
        path=_cookie_path(link.provider),
    )
    return response


def result_page(
    provider: str, title_key: str, message: str, status: int, lang: str, *, close_window: bool = False, **params
):
    """A result or refusal page of a connect window; a finished flow also drops the nonce cookie."""
    body = render_template(
        "error.html",
        title=translate(title_key, lang, **params),
        message=message,
        status=status,
        lang=lang,
        close_window=close_window,
        status_line=translate("page.status_code", lang, status=status),
    )
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    if close_window or status == 200:
        response.delete_cookie(NONCE_COOKIES[provider], path=_cookie_path(provider))
    return response


def refused_page(provider: str, exc: ServiceError, lang: str):
    """The page for a refused link, confirmation or callback, in words for its code."""
    return result_page(
        provider, "connect.refused.title", error_message(exc.code, lang, exc.message, **exc.params), exc.status, lang
    )
