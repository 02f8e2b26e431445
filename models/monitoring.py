"""The admin status summary, computed from the database (right for any worker)."""

from __future__ import annotations

from models.refresh import last_runs
from models.vault import BROKEN


def status_summary(services) -> dict:
    """What an operator wants to see: portals, credentials by provider/status, the last runs."""
    runs = last_runs(services.db, limit=5)
    last = runs[0] if runs else None
    return {
        "portals": services.portals.counts(),
        "credentials": services.vault.summary(),
        "needs_reauth": [
            {k: row[k] for k in ("id", "provider", "account", "subject", "portal_id", "last_error", "last_error_at")}
            for row in services.vault.list(status="needs_reauth", limit=200)
        ],
        # Quarantined rows no configured key decrypts (last_error "undecryptable"): an operator's job.
        "broken": [
            {k: row[k] for k in ("id", "provider", "account", "subject", "portal_id", "last_error", "last_error_at")}
            for row in services.vault.list(status=BROKEN, limit=200)
        ],
        "due_now": services.engine.due_count(),
        # Long-lived tokens (no refresh token) cannot be renewed by the keeper: someone must replace them.
        "expiring_without_refresh": services.vault.expiring_without_refresh(within_seconds=30 * 86400),
        "last_run": last,
        "recent_runs": runs,
    }
