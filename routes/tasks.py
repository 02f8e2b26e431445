"""Cron entry points: `POST /tasks/refresh` and the `flask tokens …` commands."""

from __future__ import annotations

import json

import click
from flask import Blueprint, current_app, jsonify, request

from models.install import recheck_pending_uninstalls
from models.oauth import PROVIDERS
from models.vault import STATUSES
from routes.common import ApiError, cron_token_required, json_body, services

bp = Blueprint("tasks", __name__)


def _run_params(data: dict) -> dict:
    """Validate provider, limit and budget_s from the body or the query string."""
    provider = data.get("provider") or request.args.get("provider") or None
    if provider is not None and provider not in PROVIDERS:
        raise ApiError("bad_request", f"provider must be one of {', '.join(PROVIDERS)}", 400)
    out: dict = {"provider": provider}
    # Over HTTP a run must end well inside the worker timeout, so the budget is capped by config.
    max_budget = float(current_app.config["REFRESH_BUDGET_SECONDS"])
    for name, low, high, cast in (("limit", 1, 1_000_000, int), ("budget_s", 1, max_budget, float)):
        raw = data.get(name, request.args.get(name))
        if raw is None or raw == "":
            continue
        try:
            value = cast(raw)
        except (TypeError, ValueError):
            raise ApiError("bad_request", f"{name} must be a number", 400) from None
        if not low <= value <= high:
            raise ApiError("bad_request", f"{name} must be between {low} and {high}", 400)
        out[name] = value
    return out


@bp.post("/tasks/refresh")
@cron_token_required
def refresh():
    """Refresh every due credential (cron); answers the run's report."""
    params = _run_params(json_body())
    report = services().engine.run(trigger="http", **params)
    body = report.as_dict()
    answer = {
        k: body[k]
        for k in (
            "run_id",
            "due",
            "refreshed",
            "failed",
            "needs_reauth",
            "skipped_locked",
            "left",
            "duration_ms",
            "fresh",
            "budget_exhausted",
            "errors",
        )
    }
    answer["uninstalls"] = recheck_pending_uninstalls(services().install)
    return jsonify(answer)


@bp.post("/tasks/process-events")
@cron_token_required
def process_events():
    """Process bot events left in the inbox (portal was down, a worker died) and fetch finished sessions."""
    params = _run_params(json_body())
    report = services().openlines.process_ready(
        limit=params.get("limit"),
        budget_s=params.get("budget_s", float(current_app.config["REFRESH_BUDGET_SECONDS"])),
        trigger="http",
    )
    return jsonify(report.as_dict())


def init_cli(app) -> None:
    """Register `flask tokens refresh|status|list|rotate-key`."""

    @app.cli.group("tokens")
    def tokens():
        """Token keeper commands (the same engine as POST /tasks/refresh)."""

    @tokens.command("refresh")
    @click.option("--provider", type=click.Choice(PROVIDERS), default=None)
    @click.option("--limit", type=click.IntRange(1), default=None)
    @click.option("--budget", "budget_s", type=click.FloatRange(1, 3600), default=None)
    def refresh_command(provider, limit, budget_s):
        """Refresh what is due now and print the report as JSON."""
        report = services().engine.run(provider=provider, limit=limit, budget_s=budget_s, trigger="cli")
        click.echo(json.dumps(dict(report.as_dict(), uninstalls=recheck_pending_uninstalls(services().install))))

    @tokens.command("status")
    def status_command():
        """Print credentials by provider and status, due count and the last run."""
        from models.monitoring import status_summary

        click.echo(json.dumps(status_summary(services()), default=str, ensure_ascii=False, indent=2))

    @tokens.command("list")
    @click.option("--provider", type=click.Choice(PROVIDERS), default=None)
    @click.option("--status", type=click.Choice(STATUSES), default=None)
    def list_command(provider, status):
        """List credentials (never the tokens)."""
        for row in services().vault.list(provider=provider, status=status, limit=100000):
            click.echo(
                f"{row['id']:>6} {row['provider']:<9} {row['account']:<34} {row['subject']:<12} "
                f"{row['status']:<13} v{row['version']:<4} expires_at={row['expires_at']} "
                f"failures={row['failure_count']} last_error={row['last_error'] or '-'}"
            )

    @tokens.command("rotate-key")
    def rotate_key_command():
        """Re-encrypt every stored token with the newest TOKEN_ENCRYPTION_KEY."""
        count = services().vault.rotate_key()
        click.echo(f"re-encrypted {count} rows with the newest key")
