"""One fake Bitrix24 portal on its own origin: REST, the portal page with the app iframe, frame helpers."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, render_template, request

from ..faults import DropConnectionMiddleware, faulty
from ..state import Portal, State
from ..tokens import Code
from . import (  # noqa: F401 - methods register
    calendar_view,
    lifecycle,
    methods_calendar,
    methods_core,
    methods_crm,
    methods_im,
    openlines,
    rest,
)
from .forms import request_params
from .launch import frame_launch

HERE = Path(__file__).resolve().parent
WEBHOOK_PATH = re.compile(r"(?P<user>\d+)/(?P<code>[^/]+)/(?P<method>[^/]+)")
NOT_INSTALLED = "The application is not installed on this portal."
NOT_FINISHED = "The application is not fully installed yet. Please contact your administrator."
NOT_BOUND = "This tab is not available: the application has not added it to CRM cards."


def new_flask(name: str, state: State) -> Flask:
    """Flask app with the sandbox state attached and JSON key order preserved."""
    app = Flask(
        name,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/_frame/static",
    )
    app.extensions["sandbox"] = state
    app.json.sort_keys = False  # type: ignore[attr-defined]  # provider shapes keep the documented order
    app.wsgi_app = DropConnectionMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def create_portal_app(state: State, portal: Portal) -> Flask:
    """Build the WSGI app serving one portal."""
    app = new_flask(f"sandbox-{portal.name}", state)
    app.extensions["sandbox_portal"] = portal.name

    def user_arg() -> Any:
        with state.lock:
            return portal.find_user(request.args.get("user_id", "1"))

    @app.after_request
    def cors(response: Response) -> Response:
        """The app's browser code (b24jssdk) calls REST cross-origin, as with real portals."""
        if request.path.startswith("/rest/"):
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            requested = request.headers.get("Access-Control-Request-Headers")
            response.headers["Access-Control-Allow-Headers"] = requested or "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.route("/rest/<path:method>", methods=["GET", "POST"])
    @faulty("portal")
    def rest_call(method: str) -> Response:
        """REST: /rest/{method}, /rest/{method}.json and incoming webhooks /rest/{user_id}/{code}/{method}."""
        hook = WEBHOOK_PATH.fullmatch(method.strip("/"))
        webhook = (hook["user"], hook["code"]) if hook else None
        name = (hook["method"] if hook else method.strip("/")).lower().removesuffix(".json")
        status, body = rest.handle(state, portal, name, request_params(request), webhook)
        response = jsonify(body)
        response.status_code = status
        return response

    @app.get("/")
    def home() -> Response:
        """Portal root: open the app page as the admin."""
        return redirect("/app/?user_id=1", code=302)

    @app.get("/app/")
    def page() -> tuple[str, int]:
        """Minimal portal page with the app in an iframe, as the given user sees it."""
        user = user_arg()
        if user is None or user.is_bot:
            return render_template("portal.html", portal=portal, user=None, message="Unknown user"), 404
        with state.lock:
            installed, finished = portal.installed, portal.install_finished
            first_run = user.id not in portal.opened_by
        if not installed:
            return render_template("portal.html", portal=portal, user=user, message=NOT_INSTALLED), 200
        if not user.active:
            return render_template("portal.html", portal=portal, user=user, message="Access denied"), 403
        if not finished and not user.admin:
            return render_template("portal.html", portal=portal, user=user, message=NOT_FINISHED), 200
        # A CRM card's tab (?placement=CRM_DEAL_DETAIL_TAB&id=42): only where the app bound that placement,
        # opened with PLACEMENT and PLACEMENT_OPTIONS={"ID": "42"} like Bitrix24.
        placement = (request.args.get("placement") or "DEFAULT").upper()
        options: dict[str, str] = {}
        if placement != "DEFAULT":
            with state.lock:
                bound = any(
                    p["placement"] == placement and p["client_id"] == state.our_client_id for p in portal.placements
                )
            if not bound or not finished:
                return render_template("portal.html", portal=portal, user=user, message=NOT_BOUND), 404
            options = {"ID": request.args.get("id", "")}
        launch = frame_launch(
            state,
            portal,
            user.id,
            install=not finished,
            first_run=first_run and finished,
            placement=placement,
            placement_options=options,
        )
        if finished:
            with state.lock:
                portal.opened_by.add(user.id)
        with state.lock:
            colleagues = [
                {"id": u.id, "name": u.full_name, "position": u.position} for u in portal.users.values() if u.active
            ]
        frame = {
            "appOrigin": state.app_origin,
            "frameName": launch.frame_name,
            "iframeId": "app-frame",
            "initData": launch.init,
            "refreshAuthUrl": f"/_frame/refresh-auth?user_id={user.id}",
            "installFinishUrl": f"/_frame/install-finish?user_id={user.id}",
            "eventUrl": "/_frame/event",
            "users": colleagues,
            "user": {"id": user.id, "name": user.full_name},
        }
        return render_template("portal.html", portal=portal, user=user, launch=launch, frame=frame, message=None), 200

    @app.get("/calendar/")
    def calendar_page() -> tuple[str, int]:
        """«Календарь»: calendar entries and notifications the app made on this portal, newest first."""
        user = user_arg()
        if user is None or user.is_bot:
            return render_template("portal.html", portal=portal, user=None, message="Unknown user"), 404
        with state.lock:
            entries = calendar_view.entries(portal)
            notes = calendar_view.notifications(portal)
        return render_template(
            "calendar.html", portal=portal, user=user, section="calendar", entries=entries, notifications=notes
        ), 200

    @app.post("/_frame/refresh-auth")
    def refresh_auth() -> tuple[Response, int]:
        """Fresh token pair for the frame's user (b24jssdk refreshAuth)."""
        user = user_arg()
        with state.lock:
            installed = portal.installed
        if user is None or not installed:
            return jsonify({"error": "NOT_INSTALLED", "error_description": NOT_INSTALLED}), 403
        grant = state.mint_bitrix(portal, user.id)
        return jsonify(
            {
                "AUTH_ID": grant.access_token,
                "REFRESH_ID": grant.refresh_token,
                "AUTH_EXPIRES": max(0, int(grant.access_expires - time.time() + 0.5)),
                "member_id": portal.member_id,
                "DOMAIN": portal.domain,
            }
        ), 200

    @app.post("/_frame/install-finish")
    def install_finish() -> tuple[Response, int]:
        """installFinish from the admin's installer frame."""
        ok, reason = lifecycle.install_finish(state, portal, request.args.get("user_id", "1"))
        return (jsonify({"ok": True}), 200) if ok else (jsonify({"ok": False, "error": reason}), 403)

    @app.post("/_frame/event")
    def frame_event() -> tuple[Response, int]:
        """Record a frame command (resize, setTitle, ...) so tests can read it back."""
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        with state.lock:
            portal.record(
                portal.frame_events,
                {
                    "command": body.get("command"),
                    "params": body.get("params"),
                    "user_id": request.args.get("user_id"),
                    "time": time.time(),
                },
            )
        return jsonify({"ok": True}), 200

    @app.get("/oauth/authorize/")
    def oauth_authorize() -> Response | tuple[str, int]:
        """Authorization-code flow entry (§2.1); sandbox extras: user_id, redirect_uri."""
        if request.args.get("client_id") != state.our_client_id:
            return "<!doctype html><p>Application not found (client_id)</p>", 400
        user = user_arg()
        with state.lock:
            installed = portal.installed
        if not installed or user is None:
            return f"<!doctype html><p>{NOT_INSTALLED}</p>", 400
        code = state.store.issue_code(
            Code(
                "bitrix24",
                state.our_client_id,
                {"portal": portal.name, "user_id": user.id},
                state.config["bitrix_scope"],
                time.time() + state.config["bitrix_code_ttl"],
            ),
            lambda: secrets.token_hex(16),
        )
        target = request.args.get("redirect_uri") or state.bitrix_redirect_uri or f"{state.app_url}/"
        query = {
            "code": code,
            "state": request.args.get("state", ""),
            "domain": portal.domain,
            "member_id": portal.member_id,
            "scope": state.config["bitrix_scope"],
            "server_domain": state.oauth_domain,
        }
        separator = "&" if "?" in target else "?"
        return redirect(f"{target}{separator}{urlencode(query)}", code=302)

    return app
