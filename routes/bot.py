"""Open Lines bot: the event intake (called by the dispatcher in routes/install.py), bot admin endpoints
and the `flask bot …` / `flask portals …` commands."""

from __future__ import annotations

import json
import logging

import click
from flask import Blueprint, g, jsonify, request

from models.openlines.hours import parse_schedule, valid_timezone
from routes.common import ApiError, admin_token_required, json_body, portal_access_required, services
from routes.i18n import translate

bp = Blueprint("bot", __name__)
log = logging.getLogger(__name__)

MAX_TEXT = 2000


def accept_event(event: str, payload: dict):
    """Write a bot event to the inbox and answer 200 at once; the work happens off the request path."""
    openlines = services().openlines
    accepted = openlines.accept(event, payload)
    if not accepted.duplicate:
        openlines.wake()
    return jsonify({"status": "duplicate" if accepted.duplicate else "accepted", "event": event})


def status_fields() -> dict:
    """The bot part of GET /api/admin/status for the token that asked (see routes/admin.py)."""
    openlines = services().openlines
    if g.admin_scope == "portal":
        return openlines.status(g.admin_portal)
    named = request.args.get("portal")
    if named:
        portal = services().portals.get_by_member(named[:64])
        if portal is None:
            raise ApiError("not_found", "no such portal", 404)
        return openlines.status(portal)
    return openlines.global_status()


def init_app(app) -> None:
    """Hand the bot its reply words from the catalog (models hold none) and register the CLI."""
    openlines = app.extensions["services"].openlines
    for name in ("private_reply", "out_of_hours"):
        openlines.texts[name] = {lang: translate(f"bot.{name}", lang) for lang in ("ru", "en")}
    init_cli(app)


@bp.post("/api/admin/enable")
@portal_access_required
def enable():
    """Switch the bot on for the portal."""
    services().openlines.set_enabled(g.api_portal.id, True, actor=g.api_actor)
    return jsonify({"enabled": True})


@bp.post("/api/admin/disable")
@portal_access_required
def disable():
    """Switch the bot off: chats are still handed to operators at once, nothing is stored."""
    services().openlines.set_enabled(g.api_portal.id, False, actor=g.api_actor)
    return jsonify({"enabled": False})


@bp.post("/api/admin/reinit_db")
@admin_token_required
def reinit_db():
    """Bring the schema to the newest migration (idempotent; never drops anything). Global token only."""
    if g.admin_scope != "global":
        raise ApiError("forbidden", "this needs the global admin token", 403)
    result = services().openlines.reinit_schema(actor="admin:global")
    return jsonify(result)


@bp.get("/api/admin/lines")
@portal_access_required
def lines():
    """The portal's Open Lines and whether the bot is their welcome bot."""
    return jsonify({"items": services().openlines.portal_lines(g.api_portal)})


@bp.post("/api/admin/bot/attach")
@portal_access_required
def attach():
    """Make the bot the welcome bot of a line: {"line_id"}."""
    line_id = str(json_body().get("line_id") or "")
    if not line_id.isdigit() or len(line_id) > 12:
        raise ApiError("bad_setting", "line_id must be a line's numeric id", 400, name="line_id")
    result = services().openlines.attach(g.api_portal, line_id, actor=g.api_actor)
    return jsonify(result)


@bp.get("/api/admin/bot/settings")
@portal_access_required
def get_settings():
    """Greeting, switch, transfer mode, time zone and the lines' working hours."""
    return jsonify(services().openlines.describe_settings(g.api_portal.id))


def _text_or_none(value, name: str):
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ApiError("bad_setting", f"{name} must be a text of at most {MAX_TEXT} characters", 400, name=name)
    return value.strip() or None


def parse_settings(data: dict) -> dict:
    """Validate PUT /api/admin/bot/settings; only the keys present are changed."""
    out: dict = {}
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ApiError("bad_setting", "enabled must be true or false", 400, name="enabled")
        out["enabled"] = data["enabled"]
    if "greeting" in data:
        out["greeting"] = _text_or_none(data["greeting"], "greeting")
    if "timezone" in data:
        tz = data["timezone"]
        if tz is not None and (not isinstance(tz, str) or len(tz) > 64 or not valid_timezone(tz)):
            raise ApiError("bad_setting", "timezone must be an IANA name such as Europe/Moscow", 400, name="timezone")
        out["timezone"] = tz
    if "transfer_mode" in data:
        if data["transfer_mode"] not in ("operator", "queue"):
            raise ApiError("bad_setting", "transfer_mode is operator or queue", 400, name="transfer_mode")
        out["transfer_mode"] = data["transfer_mode"]
    if "queue_id" in data:
        queue = data["queue_id"]
        if queue is not None and not (isinstance(queue, str | int) and str(queue).isdigit() and len(str(queue)) < 12):
            raise ApiError("bad_setting", "queue_id must be a line id", 400, name="queue_id")
        out["queue_id"] = str(queue) if queue is not None else None
    if "lines" in data:
        raw = data["lines"]
        if not isinstance(raw, dict) or len(raw) > 100:
            raise ApiError("bad_setting", "lines must be an object keyed by line id", 400, name="lines")
        out["lines"] = {}
        for line_id, values in raw.items():
            if not str(line_id).isdigit() or len(str(line_id)) > 12 or not isinstance(values, dict):
                raise ApiError("bad_setting", "lines must be an object keyed by line id", 400, name="lines")
            line: dict = {}
            if "schedule" in values:
                line["schedule"] = parse_schedule(values["schedule"])
            if "out_of_hours_text" in values:
                line["out_of_hours_text"] = _text_or_none(values["out_of_hours_text"], "out_of_hours_text")
            if "out_of_hours_action" in values:
                if values["out_of_hours_action"] not in ("queue", "finish"):
                    raise ApiError(
                        "bad_setting", "out_of_hours_action is queue or finish", 400, name="out_of_hours_action"
                    )
                line["out_of_hours_action"] = values["out_of_hours_action"]
            out["lines"][str(line_id)] = line
    return out


@bp.put("/api/admin/bot/settings")
@portal_access_required
def put_settings():
    """Change the greeting, switch, transfer mode, time zone or lines' working hours."""
    changes = parse_settings(json_body())
    result = services().openlines.update_settings(g.api_portal.id, changes, actor=g.api_actor)
    return jsonify(result)


def _find_portal(ref: str):
    portals = services().portals
    portal = portals.get_by_member(ref)
    if portal is None and ref.isdigit():
        portal = portals.get(int(ref))
    if portal is None:
        portal = next((p for p in portals.list() if p.domain == ref), None)
    if portal is None:
        raise click.ClickException(f"no portal {ref!r} (give its member_id, id or domain)")
    return portal


def init_cli(app) -> None:
    """Register `flask portals list|purge` and `flask bot on|off|status|attach|process-events`."""

    # `flask portals …` is one group, shared with `flask portals revoke-token` (routes/admin.py).
    from routes.admin import bp as admin_bp

    portals_group = admin_bp.cli

    @portals_group.command("list")
    def portals_list():
        """One line per portal: id, member_id, domain, status, bot."""
        for portal in services().portals.list():
            settings = services().openlines.settings_row(portal.id)
            click.echo(
                f"{portal.id:>5} {portal.member_id:<34} {portal.domain:<40} {portal.status:<12} "
                f"bot={portal.bot_id or '-'} {'on' if settings['enabled'] else 'off'}"
            )

    @portals_group.command("purge")
    @click.argument("portal")
    @click.option("--yes", is_flag=True, help="do not ask for confirmation (scripts)")
    def portals_purge(portal, yes):
        """Unregister the bot where a token still works and delete every row of the portal."""
        found = _find_portal(portal)
        if not yes:
            click.confirm(f"Delete all data of {found.domain} ({found.member_id})?", abort=True)
        result = services().openlines.purge_portal(found, actor="cli")
        click.echo(json.dumps({"portal": found.member_id, **result}))

    @app.cli.group("bot")
    def bot_group():
        """The Open Lines bot, per portal."""

    @bot_group.command("on")
    @click.argument("portal")
    def bot_on(portal):
        """Switch the bot on."""
        found = _find_portal(portal)
        services().openlines.set_enabled(found.id, True, actor="cli")
        click.echo(f"bot on for {found.domain}")

    @bot_group.command("off")
    @click.argument("portal")
    def bot_off(portal):
        """Switch the bot off (chats are still handed to operators; nothing is stored)."""
        found = _find_portal(portal)
        services().openlines.set_enabled(found.id, False, actor="cli")
        click.echo(f"bot off for {found.domain}")

    @bot_group.command("status")
    @click.argument("portal", required=False)
    def bot_status(portal):
        """The bot's state on a portal (or over all portals)."""
        openlines = services().openlines
        body = openlines.status(_find_portal(portal)) if portal else openlines.global_status()
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))

    @bot_group.command("attach")
    @click.argument("portal")
    @click.argument("line", required=False)
    def bot_attach(portal, line):
        """Attach the bot to a line (without LINE: list the lines)."""
        from models.errors import ServiceError

        found = _find_portal(portal)
        try:
            if not line:
                for item in services().openlines.portal_lines(found):
                    click.echo(f"{item['line_id']:>5} {item['name']:<40} {'attached' if item['bot_attached'] else '-'}")
                return
            click.echo(json.dumps(services().openlines.attach(found, line, actor="cli")))
        except ServiceError as exc:
            raise click.ClickException(f"{exc.code} {exc.params or ''}".strip()) from None

    @bot_group.command("process-events")
    @click.option("--limit", type=click.IntRange(1), default=None)
    @click.option("--budget", "budget_s", type=click.FloatRange(1, 3600), default=240.0)
    def process_events(limit, budget_s):
        """Process the inbox rows left (portal was down, a worker died) and fetch finished sessions."""
        report = services().openlines.process_ready(limit=limit, budget_s=budget_s, trigger="cli")
        click.echo(json.dumps(report.as_dict()))
