"""The seeds' URLs that the new API names differently: thin aliases answering exactly what the new view answers.

The old Telemost app's front end asked `GET /api/users/current`; the new one asks `GET /api/current-user`.
The old bot's `GET /api/users`, `POST /api/admin/enable|disable`, `GET /api/admin/status` and
`POST /api/admin/reinit_db` keep their URLs in routes/dialogs.py, routes/bot.py and routes/admin.py (with
`?token=` accepted beside the preferred `X-API-Token` header), so they need no alias here.
"""

from __future__ import annotations

from flask import Blueprint

from routes import ui

bp = Blueprint("legacy_api", __name__)


@bp.get("/api/users/current")
def users_current():
    """The seeds' name for GET /api/current-user: the same verified user, portal and alerts."""
    return ui.current_user()
