"""The Connections card's API: every credential the app holds for the admin's portal (no token ever)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from models.connections import Connections
from routes.common import portal_admin_required, services

bp = Blueprint("connections", __name__)


@bp.get("/api/portal/connections")
@portal_admin_required
def portal_connections():
    """Status, refresh times, refresh-token life, last error code and re-authorise action of each credential."""
    svc = services()
    return jsonify(
        Connections(svc.db, svc.engine.settings, bool(svc.integrations.env_yandex_token)).for_portal(g.portal.id)
    )
