"""Install paths and the Bitrix24 event dispatcher (/install, /events, /python_bot/)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, render_template, request

from models.forms import MalformedForm, parse_urlencoded, unflatten
from models.openlines import BOT_EVENTS
from models.portal import Rejected
from routes.bot import accept_event
from routes.common import ApiError, error_page, form_items, json_object, refuse_query_auth, services
from routes.frame import frame_headers, portal_origin
from routes.i18n import error_message, normalize_language, request_language, translate

bp = Blueprint("install", __name__)
log = logging.getLogger(__name__)

APP_EVENTS = ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL")


def _payload(form_read: bool = False) -> dict:
    """The event as Bitrix24 posts it (form with PHP bracket keys) or as JSON; bad input is a 400."""
    if request.mimetype == "application/json":
        return json_object(request.get_data())
    try:
        if request.mimetype == "application/x-www-form-urlencoded" and not form_read:
            # Bot events arrive by the thousand: our parser reads Bitrix24's ~90-field form several times
            # faster than werkzeug's (bench/bot_ingest.py); the query string still comes first, as in form_items.
            try:
                items = parse_urlencoded(request.get_data(cache=False))
            except UnicodeError:
                raise ApiError("bad_request", "the request holds text that is not valid UTF-8", 400) from None
            return unflatten([*_query_items(), *items])
        return unflatten(form_items())
    except MalformedForm as exc:
        raise ApiError("bad_request", str(exc), 400) from exc


def _query_items() -> list[tuple[str, str]]:
    """The query string's fields (Bitrix24 sends none with events; usually empty, so cheap)."""
    if not request.query_string:
        return []
    try:
        return list(request.args.items(multi=True))
    except UnicodeError:
        raise ApiError("bad_request", "the request holds text that is not valid UTF-8", 400) from None


def dispatch(payload: dict):
    """Route an event by its name after the checks its kind needs."""
    event = str(payload.get("event") or "").upper()
    install_service = services().install
    try:
        if event == "ONAPPINSTALL":
            result = install_service.install_from_event(payload)
            body = {
                "status": "installed" if result.ok else "setup_failed",
                "member_id": result.portal.member_id,
                "bot_id": result.bot_id,
            }
            if not result.ok:
                body.update(error=result.error, message=error_message(result.error, "en", **(result.params or {})))
            return jsonify(body), 200 if result.ok else 502
        if event == "ONAPPUPDATE":
            result = install_service.handle_update(payload)
            return jsonify(
                {"status": "updated" if result.ok else "setup_failed", "version": result.portal.version}
            ), 200 if result.ok else 502
        if event == "ONAPPUNINSTALL":
            outcome = install_service.handle_uninstall(payload)
            # Pending: the OAuth server gave no definite answer; the next task run asks again.
            return jsonify(
                {"status": outcome.status, "member_id": outcome.portal.member_id}
            ), 202 if outcome.status == "pending" else 200
        if not event:
            raise ApiError("bad_request", "no event name in the request", 400)
        if event in BOT_EVENTS:
            return accept_event(event, payload)
        portal = install_service.authenticate_event(payload)
        log.info("event %s from portal %s accepted, no handler yet", event, portal.member_id)
        return jsonify({"status": "ignored", "event": event})
    except Rejected as exc:
        log.warning("event %s refused: %s", event or "?", exc.code)
        raise


def _installer_page(fields: dict, install: dict, status: int):
    """The installer page (the Vue install screen) with its boot data, framed for the posting portal."""
    page = render_template("install.html", boot={"api_base": request.script_root, "install": install})
    return frame_headers(page, status, portal_origin(fields, services().portals))


@bp.route("/install", methods=["GET", "POST"])
@refuse_query_auth
def install():
    """ONAPPINSTALL (event form) or the installer page opened in the portal's iframe."""
    if request.method == "POST" and request.values.get("event"):
        return dispatch(_payload(form_read=True))
    fields = request.values.to_dict()
    lang = normalize_language(fields.get("LANG")) or request_language()  # Bitrix24 puts LANG in the query
    if request.method == "GET" and not fields.get("AUTH_ID"):
        return error_page(translate("page.install_title", lang), translate("page.install_hint", lang), 200)
    try:
        result = services().install.install_from_installer(fields)
    except Rejected as exc:
        log.warning("installer refused: %s", exc.code)
        return _installer_page(
            fields,
            {"ok": False, "error": exc.code, "portal": None, "message": error_message(exc.code, lang, **exc.params)},
            exc.status,
        )
    message = (
        translate("page.install_done", lang)
        if result.ok
        else error_message(result.error, lang, **(result.params or {}))
    )
    return _installer_page(
        fields,
        {
            "ok": result.ok,
            "error": result.error,
            "message": message,
            "portal": {"domain": result.portal.domain},
            "bot_id": result.bot_id,
        },
        200 if result.ok else 502,
    )


@bp.post("/events")
def events():
    """Events bound with event.bind (ONAPPUPDATE, ONAPPUNINSTALL, …)."""
    return dispatch(_payload())


# strict_slashes=False: a bot registered by hand without the slash (`…/python_bot`) is served as is. The
# default 308 redirect would lose the event: Bitrix24 delivers it once and does not follow redirects.
@bp.post("/python_bot/", strict_slashes=False)
def bot_events():
    """Open Lines bot events (the handler URL registered with imbot.register ends with a slash)."""
    return dispatch(_payload())
