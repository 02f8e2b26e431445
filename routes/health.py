"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, request

from routes.common import services

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/health")
def health():
    """Liveness: the process answers."""
    return jsonify(
        {"status": "healthy", "service": current_app.config["SERVICE_NAME"], "base_path": request.script_root or "/"}
    )


@bp.get("/health/ready")
def ready():
    """Readiness: the database answers and holds the schema."""
    try:
        services().db.ping()
    except sa.exc.SQLAlchemyError as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        response = jsonify(
            {
                "status": "unavailable",
                "error": "database_unavailable",
                "message": "the database cannot be used",
                "base_path": request.script_root or "/",
            }
        )
        response.status_code = 503
        return response
    return jsonify(
        {"status": "ready", "service": current_app.config["SERVICE_NAME"], "base_path": request.script_root or "/"}
    )
