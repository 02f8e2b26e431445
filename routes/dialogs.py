"""Dialogs API: the portal's Open Lines dialogs (list, one with its messages, CSV) and its employees."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from flask import Blueprint, Response, g, jsonify, request

from routes.common import ApiError, portal_access_required, services

bp = Blueprint("dialogs", __name__)

STATUSES = ("new", "transferred", "transfer_failed", "finished")
MAX_PER_PAGE = 100
CSV_COLUMNS = (
    "chat_id",
    "created_at",
    "line_id",
    "connector",
    "client_id",
    "client_name",
    "status",
    "transfer_outcome",
    "out_of_hours",
    "crm",
    "first_message",
)


def _time(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw.isdigit() and len(raw) <= 12:
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw[:40])
    except ValueError:
        raise ApiError("bad_filter", f"{name} must be a unix time or an ISO date", 400, name=name) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError("bad_filter", f"{name} must be between {low} and {high}", 400, name=name)
    return int(raw)


def filters() -> dict:
    """status, line_id, from, to and q from the query string, validated."""
    out: dict = {"from": _time("from"), "to": _time("to")}
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError("bad_filter", f"status must be one of {', '.join(STATUSES)}", 400, name="status")
    line_id = request.args.get("line_id") or None
    if line_id is not None and (not line_id.isdigit() or len(line_id) > 12):
        raise ApiError("bad_filter", "line_id must be a line's numeric id", 400, name="line_id")
    q = (request.args.get("q") or "").strip()
    if len(q) > 100:
        raise ApiError("bad_filter", "q is at most 100 characters", 400, name="q")
    out.update(status=status, line_id=line_id, q=q or None)
    return out


@bp.get("/api/dialogs")
@portal_access_required
def list_dialogs():
    """A page of dialogs: {"items", "page", "per_page", "total"}."""
    page = _int("page", 1, 1, 100_000)
    per_page = _int("per_page", 20, 1, MAX_PER_PAGE)
    return jsonify(services().openlines.list_dialogs(g.api_portal.id, filters(), page, per_page))


def _cell(value) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run cells that start with these as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/api/dialogs.csv")
@portal_access_required
def dialogs_csv():
    """The same filters as /api/dialogs, every match as CSV (UTF-8 with BOM, for spreadsheets)."""
    rows = services().openlines.iter_dialogs(g.api_portal.id, filters())
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        created = datetime.fromtimestamp(row["created_at"], UTC).isoformat() if row["created_at"] else ""
        crm = ";".join(f"{k}:{v}" for k, v in sorted(row["crm"].items()))
        writer.writerow(
            [
                _cell(v)
                for v in (
                    row["chat_id"],
                    created,
                    row["line_id"],
                    row["connector"],
                    row["client"]["id"],
                    row["client"]["name"],
                    row["status"],
                    row["transfer_outcome"],
                    "yes" if row["out_of_hours"] else "",
                    crm,
                    row["first_message"],
                )
            ]
        )
    return Response(
        out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="dialogs.csv"'}
    )


@bp.get("/api/dialogs/<int:chat_id>")
@portal_access_required
def get_dialog(chat_id: int):
    """One dialog with its messages and the hand-off outcome."""
    dialog = services().openlines.get_dialog(g.api_portal.id, chat_id)
    if dialog is None:
        raise ApiError("dialog_not_found", "no such dialog", 404)
    return jsonify(dialog)


@bp.get("/api/users")
@portal_access_required
def users():
    """The portal's active employees."""
    return jsonify({"items": services().openlines.users(g.api_portal)})
