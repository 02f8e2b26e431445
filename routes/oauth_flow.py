"""The OAuth code flow: the app opened outside the portal (a bookmark, a link in a mail).

`/auth/bitrix24?portal=<domain>` sends the browser to the portal's consent page; the portal sends it back
to `/auth/bitrix24/callback` with a code, which is exchanged and its user verified like an iframe open.
This is the one place the app lives outside a frame, so it is the one place with a session cookie
(first-party, HttpOnly, SameSite=Lax, Secure unless a loopback dev URL); the UI in the tab renews its
bearer token with it at `POST /api/session/cookie`. Nothing here is ever set or read inside the frame.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify, make_response, redirect, render_template, request, url_for

from models.errors import ServiceError
from models.oauth_flow import WEB_SESSION_TTL_SECONDS, CodeFlow, CodeFlowRefused
from models.portal import Rejected
from models.security import new_secret
from routes.common import ApiError, error_page, services
from routes.i18n import error_message, request_language, translate
from routes.ui import _user_json, alerts_json

bp = Blueprint("oauth_flow", __name__)
log = logging.getLogger(__name__)

NONCE_COOKIE = "bitrix24_oauth_nonce"
SESSION_COOKIE = "b24_web_session"
NONCE_MAX_AGE = 900
# No script on the app's page may be framed by anyone: the tab holds a cookie session (clickjacking).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@bp.record_once
def _wire(state) -> None:
    app = state.app
    found = app.extensions["services"]
    app.extensions["code_flow"] = CodeFlow(
        found.portals.db,
        found.portals,
        app.config["SESSION_SIGNING_KEY"],
        app.config["PUBLIC_URL"] or "b24-telemost",
    )


def code_flow() -> CodeFlow:
    """The app's code-flow model."""
    return current_app.extensions["code_flow"]


def _secure_cookies() -> bool:
    """Secure cookies everywhere but a plain-HTTP loopback URL (the sandbox and `make demo`)."""
    parts = urlsplit(current_app.config["PUBLIC_URL"] or request.host_url)
    return not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def _refused(exc: ServiceError, status: int | None = None):
    """A readable page for a refused start, callback or session, in the request's language."""
    lang = request_language()
    log.warning("code flow refused: %s", exc.code)
    body, code = error_page(
        translate("oauth.refused.title", lang), error_message(exc.code, lang, **exc.params), status or exc.status
    )
    response = make_response(body, code)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/auth/bitrix24")
def start():
    """Without ?portal= a form asking for the portal; with it, on to that portal's consent page."""
    domain = request.args.get("portal", "").strip()
    lang = request_language()
    if not domain:
        body = render_template("oauth_start.html", lang=lang, t=lambda key: translate(key, lang))
        return body, 200, {"Cache-Control": "no-store"}
    flow = code_flow()
    try:
        portal = flow.portal_for_domain(domain)
    except CodeFlowRefused as exc:
        return _refused(exc)
    nonce = new_secret(16)
    state = flow.start(portal, nonce)
    response = redirect(flow.authorize_url(portal, current_app.config["BITRIX24_CLIENT_ID"], state), code=302)
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        max_age=NONCE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=_secure_cookies(),
        path=f"{request.script_root}/auth/bitrix24/",
    )
    return response


@bp.get("/auth/bitrix24/callback")
def callback():
    """The portal sends the user back with a code: spend the state, verify the user, set the session cookie."""
    args = request.args
    try:
        portal_id = code_flow().spend(args.get("state", ""), request.cookies.get(NONCE_COOKIE))
    except CodeFlowRefused as exc:
        return _refused(exc)
    if args.get("error"):
        return _refused(CodeFlowRefused("consent_denied"), 400)
    portal = services().portals.get(portal_id)
    member_id = args.get("member_id", "")
    if portal is None or not portal.installed:
        return _refused(Rejected("not_installed", 401))
    if member_id != portal.member_id:
        # The state was issued for another portal: a code from elsewhere must not sign in here.
        return _refused(Rejected("member_mismatch", 403))
    try:
        identity, portal = services().identity.verify_code_flow(args.get("code", ""), member_id, args.get("domain", ""))
    except Rejected as exc:
        return _refused(exc, 401 if exc.status < 500 and exc.status != 400 else exc.status)
    value, _expires = code_flow().issue_web_session(identity)
    log.info("portal %s user %s signed in with the code flow", portal.member_id, identity.user_id)
    # 303 to the app page: the address bar never keeps the spent code, and a reload works.
    response = redirect(url_for("oauth_flow.app_page"), code=303)
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(NONCE_COOKIE, path=f"{request.script_root}/auth/bitrix24/")
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=WEB_SESSION_TTL_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=_secure_cookies(),
        path=f"{request.script_root}/",
    )
    return response


@bp.get("/auth/bitrix24/app")
def app_page():
    """The app's UI in a normal tab, for the user of the session cookie (else the portal form)."""
    try:
        identity, portal = code_flow().web_identity(request.cookies.get(SESSION_COOKIE))
    except CodeFlowRefused:
        return redirect(url_for("oauth_flow.start"), code=303)
    lang = request_language()
    token, expires_at = services().signer.issue(identity)
    boot = {
        "token": token,
        "token_expires_at": expires_at,
        "api_base": request.script_root,
        "user": _user_json(identity),
        "portal": {"member_id": portal.member_id, "domain": portal.domain},
        "alerts": alerts_json(portal.id, lang),
        "placement": "DEFAULT",
        "lang": lang,
        # Outside a frame there is no frame SDK: the UI renews its token with the cookie (api.js).
        "session": "cookie",
    }
    response = make_response(render_template("index.html", boot=boot), 200)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/api/session/cookie")
def cookie_session():
    """A new bearer token for the tab opened with the code flow, from its first-party session cookie."""
    # A JSON body cannot be sent cross-site without a CORS preflight, which this endpoint never grants.
    if not request.is_json:
        raise ApiError("bad_request", "send a JSON body", 400)
    try:
        identity, _portal = code_flow().web_identity(request.cookies.get(SESSION_COOKIE))
    except CodeFlowRefused as exc:
        raise ApiError(exc.code, error_message(exc.code, "en"), exc.status) from exc
    token, expires_at = services().signer.issue(identity)
    return jsonify({"token": token, "expires_at": expires_at, "user": _user_json(identity)})


@bp.post("/auth/bitrix24/logout")
def logout():
    """Forget the session cookie of this browser; back to the portal form."""
    response = redirect(url_for("oauth_flow.start"), code=303)
    response.delete_cookie(SESSION_COOKIE, path=f"{request.script_root}/")
    return response
