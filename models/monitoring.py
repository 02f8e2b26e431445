"""Prometheus text and the admin status summary, computed from the database (right for any worker)."""

from __future__ import annotations

import time

from models.refresh import last_runs
from models.vault import BROKEN, STATUSES

PROVIDERS = ("bitrix24", "yandex", "amocrm")
HELP = {
    "refresh_attempts_total": "Refresh requests sent to OAuth providers.",
    "refresh_success_total": "Refreshes whose new pair was stored.",
    "refresh_failures_total": "Failed refresh requests by error class (transient, permanent, lost_response).",
    "credentials_needs_reauth_total": "Credentials that became needs_reauth.",
    "refresh_runs_total": "Refresh runs by trigger.",
}


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


def prometheus_text(services) -> str:
    """Render the metrics in the Prometheus text exposition format."""
    lines: list[str] = []
    summary = services.vault.summary()
    lines += ["# HELP b24_credentials Stored credentials by provider and status.", "# TYPE b24_credentials gauge"]
    for provider in PROVIDERS:
        for status in STATUSES:
            value = summary.get(provider, {}).get(status, 0)
            lines.append(f'b24_credentials{{provider="{provider}",status="{status}"}} {value}')
    by_name: dict[str, list[tuple[str, int]]] = {}
    for name, labels, value in services.metrics.counters():
        by_name.setdefault(name, []).append((labels, value))
    for name in sorted(set(by_name) | set(HELP)):
        metric = f"b24_{name}"
        lines += [f"# HELP {metric} {HELP.get(name, name)}", f"# TYPE {metric} counter"]
        for labels, value in by_name.get(name, []):
            lines.append(f"{metric}{{{labels}}} {value}" if labels else f"{metric} {value}")
    runs = last_runs(services.db, limit=1)
    lines += ["# HELP b24_refresh_last_run_duration_seconds Duration of the newest finished refresh run.",
              "# TYPE b24_refresh_last_run_duration_seconds gauge",
              "# HELP b24_refresh_last_run_age_seconds Seconds since the newest refresh run started.",
              "# TYPE b24_refresh_last_run_age_seconds gauge"]
    if runs:
        run = runs[0]
        lines.append(f"b24_refresh_last_run_duration_seconds {(run['duration_ms'] or 0) / 1000:.3f}")
        lines.append(f"b24_refresh_last_run_age_seconds {time.time() - run['started_at']:.0f}")
    lines += ["# HELP b24_portals Portals by status.", "# TYPE b24_portals gauge"]
    for status, count in sorted(services.portals.counts().items()):
        lines.append(f'b24_portals{{status="{status}"}} {count}')
    return "\n".join(lines) + "\n"
