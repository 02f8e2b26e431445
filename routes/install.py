"""Install paths and the Bitrix24 event dispatcher (/install, /events, /python_bot/)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, render_template, request

from models.forms import MalformedForm, unflatten
from models.openlines import BOT_EVENTS
from models.portal import Rejected
from routes.bot import accept_event
from routes.common import ApiError, error_page, form_items, json_object, services
from routes.frame import frame_headers, portal_origin

bp = Blueprint("install", __name__)
log = logging.getLogger(__name__)

APP_EVENTS = ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL")


def _payload() -> dict:
    """The event as Bitrix24 posts it (form with PHP bracket keys) or as JSON."""
    if request.mimetype == "application/json":
        return json_object(request.get_data())
    try:
        return unflatten(form_items())
    except MalformedForm as exc:
        raise ApiError("bad_request", str(exc), 400) from exc


def dispatch(payload: dict):
    """Route an event by its name after the checks its kind needs."""
    event = str(payload.get("event") or "").upper()
    portals = services().portals
    try:
        if event == "ONAPPINSTALL":
            result = portals.install_from_event(payload)
            body = {"status": "installed" if result.ok else "setup_failed", "member_id": result.portal.member_id,
                    "bot_id": result.bot_id}
            if not result.ok:
                body.update(error=result.error, message=result.message)
            return jsonify(body), 200 if result.ok else 502
        if event == "ONAPPUPDATE":
            result = portals.handle_update(payload)
            return jsonify({"status": "updated" if result.ok else "setup_failed",
                            "version": result.portal.version}), 200 if result.ok else 502
        if event == "ONAPPUNINSTALL":
            portal = portals.handle_uninstall(payload)
            return jsonify({"status": "uninstalled", "member_id": portal.member_id})
        if not event:
            raise ApiError("bad_request", "no event name in the request", 400)
        if event in BOT_EVENTS:
            return accept_event(event, payload)
        portal = portals.authenticate_event(payload)
        log.info("event %s from portal %s accepted, no handler yet", event, portal.member_id)
        return jsonify({"status": "ignored", "event": event})
    except Rejected as exc:
        log.warning("event %s refused: %s", event or "?", exc.code)
        raise


@bp.route("/install", methods=["GET", "POST"])
def install():
    """ONAPPINSTALL (event form) or the installer page opened in the portal's iframe."""
    if request.method == "POST" and request.values.get("event"):
        return dispatch(_payload())
    fields = request.values.to_dict()
    if request.method == "GET" and not fields.get("AUTH_ID"):
        return error_page("Установка приложения",
                          "Эта страница открывается Bitrix24 при установке приложения. "
                          "Установите приложение из Bitrix24 Маркета или раздела «Разработчикам».", 200)
    try:
        result = services().portals.install_from_installer(fields)
    except Rejected as exc:
        log.warning("installer refused: %s", exc.code)
        page = render_template("install.html", boot={
            "api_base": request.script_root,
            "install": {"ok": False, "error": exc.code, "message": exc.message, "portal": None},
        })
        return frame_headers(page, exc.status, portal_origin(fields, services().portals))
    boot = {
        "api_base": request.script_root,
        "install": {"ok": result.ok, "error": result.error,
                    "message": "Приложение установлено" if result.ok else result.message,
                    "portal": {"domain": result.portal.domain}, "bot_id": result.bot_id},
    }
    return frame_headers(render_template("install.html", boot=boot), 200 if result.ok else 502,
                         portal_origin(fields, services().portals))


@bp.post("/events")
def events():
    """Events bound with event.bind (ONAPPUPDATE, ONAPPUNINSTALL, …)."""
    return dispatch(_payload())


@bp.post("/python_bot/")
def bot_events():
    """Open Lines bot events (the handler URL registered with imbot.register ends with a slash)."""
    return dispatch(_payload())
