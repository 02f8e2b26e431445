"""`flask doctor` (the health report of everything the app depends on) and `flask integrations …`.

The checks live in models/doctor.py and answer codes; the words (and the fix for each problem) come from
routes/i18n/legacy.py.
"""

from __future__ import annotations

import click

from config import display_url
from models import doctor
from models.errors import ServiceError
from routes.common import services
from routes.i18n import LANGUAGES, error_message, translate

MARKS = {doctor.OK: "OK  ", doctor.WARN: "WARN", doctor.FAIL: "FAIL"}


def render(finding: doctor.Finding, lang: str = "en") -> list[str]:
    """The report lines of one finding: status, area, what was found; the fix under any problem."""
    params = {k: display_url(v) if isinstance(v, str) and "://" in v else v for k, v in finding.params.items()}
    params["subject"] = finding.subject
    area = translate(f"doctor.area.{finding.area}", lang)
    text = translate(f"doctor.{finding.code}", lang, **params)
    lines = [f"{MARKS[finding.status]} {area}: {text}"]
    if finding.status != doctor.OK:
        lines.append(
            "       "
            + translate("doctor.fix_label", lang)
            + " "
            + translate(f"doctor.fix.{finding.code}", lang, **params)
        )
    return lines


def init_cli(app) -> None:
    """Register `flask doctor` and `flask integrations yandex-connect`."""

    @app.cli.command("doctor")
    @click.option("--lang", type=click.Choice(LANGUAGES), default="en", show_default=True)
    def doctor_command(lang):
        """Check the configuration, database, OAuth server, portals, Telemost, accounts and cron runs."""
        from flask import current_app

        findings = doctor.run_checks(services(), current_app.config)
        for finding in findings:
            for line in render(finding, lang):
                click.echo(line)
        failed = sum(f.status == doctor.FAIL for f in findings)
        warned = sum(f.status == doctor.WARN for f in findings)
        click.echo(translate("doctor.summary", lang, failed=failed, warned=warned))
        raise SystemExit(doctor.exit_code(findings))

    @app.cli.group("integrations")
    def integrations_group():
        """Outside accounts (Yandex) connected from the command line."""

    @integrations_group.command("yandex-connect")
    @click.option("--portal", "member_id", required=True, help="the portal's member_id")
    @click.option("--code", required=True, help="a Yandex OAuth authorization code (7 digits, 10 min)")
    def yandex_connect_command(member_id, code):
        """Connect the portal's Yandex account from an authorization code (the connect flow's last step)."""
        found = services()
        portal = found.portals.get_by_member(member_id)
        if portal is None or not portal.installed:
            raise click.ClickException(error_message("portal_not_installed"))
        try:
            result = found.integrations.connect_yandex(portal.id, code, actor="cli")
        except ServiceError as exc:
            raise click.ClickException(error_message(exc.code, "en", exc.message, **exc.params)) from None
        click.echo(translate("cli.yandex_connected", "en", account=result["account"], domain=portal.domain))
