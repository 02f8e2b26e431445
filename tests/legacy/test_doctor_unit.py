"""Doctor pieces without the live stack: cron-run rules, the bot's attached lines, the words of every code."""

from __future__ import annotations

import re
import time
from pathlib import Path

import sqlalchemy as sa

from database import bot_lines, portals, task_runs
from models import doctor
from routes.doctor import render
from routes.i18n import legacy


def _run(db, task: str, age_seconds: float) -> None:
    with db.write() as conn:
        conn.execute(
            sa.insert(task_runs).values(
                run_id=f"{task}-{age_seconds}", task=task, trigger="cli", started_at=time.time() - age_seconds
            )
        )


def _portal_with_attached_bot(db) -> None:
    with db.write() as conn:
        conn.execute(
            sa.insert(portals).values(
                member_id="m1",
                domain="a.bitrix24.ru",
                client_endpoint="x",
                server_endpoint="x",
                installed_at=1,
                updated_at=1,
            )
        )
        conn.execute(sa.insert(bot_lines).values(portal_id=1, line_id="1", attached_at=100, updated_at=100))


def test_missing_event_run_fails_once_a_bot_is_attached(app):
    db = app.extensions["db"]
    _run(db, doctor.REFRESH_TASK, 60)
    assert [(f.subject, f.status, f.code) for f in doctor.check_runs(db)] == [
        ("refresh", doctor.OK, "task_ok"),
        ("process-events", doctor.WARN, "task_never_ran"),
    ]
    _portal_with_attached_bot(db)
    assert [(f.subject, f.status, f.code) for f in doctor.check_runs(db)] == [
        ("refresh", doctor.OK, "task_ok"),
        ("process-events", doctor.FAIL, "task_never_ran"),
    ]
    _run(db, doctor.EVENTS_TASK, 3 * 3600)
    found = doctor.check_runs(db)[1]
    assert (found.status, found.code, found.params["minutes"]) == (doctor.FAIL, "task_stale", 180)


def test_refresh_never_ran_is_a_warning_without_credentials(app):
    found = doctor.check_runs(app.extensions["db"], has_credentials=False)[0]
    assert (found.status, found.code) == (doctor.WARN, "task_never_ran")
    found = doctor.check_runs(app.extensions["db"], has_credentials=True)[0]
    assert (found.status, found.code) == (doctor.FAIL, "task_never_ran")


def test_every_code_has_words_and_a_fix_in_both_languages():
    source = Path(doctor.__file__).read_text(encoding="utf-8")
    codes = set(re.findall(r'Finding\([^,]+, (?:OK|WARN|FAIL|FAIL if required else WARN), "([a-z_]+)"', source))
    codes |= {
        f"{area}_{state}"
        for area in ("portal", "yandex", "amocrm")
        for state in ("credential_missing", "needs_reauth", "broken", "inactive")
    }
    codes |= {f"{area}_{state}" for area in ("yandex", "amocrm") for state in ("unreachable", "token_refused")}
    assert "migrations_behind" in codes and "portal_needs_reauth" in codes
    for lang in ("en", "ru"):
        messages = legacy.MESSAGES[lang]
        assert sorted(c for c in codes if f"doctor.{c}" not in messages) == []
        assert sorted(c for c in codes if not c.endswith("_ok") and f"doctor.fix.{c}" not in messages) == []
    assert set(legacy.MESSAGES["en"]) == set(legacy.MESSAGES["ru"])


def test_render_shows_unicode_hosts_and_the_fix():
    finding = doctor.Finding(
        "config", doctor.WARN, "public_url_plain_http", params={"url": "http://xn--e1aarfksbg.xn--p1ai/app"}
    )
    assert render(finding) == [
        "WARN configuration: the app is served over plain HTTP (http://телемост.рф/app)",
        "       fix: tokens travel unencrypted: put TLS in front (e.g. certbot --nginx) and change PUBLIC_URL "
        "to https://",
    ]
    assert render(finding, "ru")[0] == (
        "WARN настройки: приложение работает по HTTP без шифрования (http://телемост.рф/app)"
    )


def test_config_findings():
    cfg = {
        "APP_ENV": "production",
        "PUBLIC_URL": "http://xn--e1aarfksbg.xn--p1ai",
        "YANDEX_CLIENT_ID": "id",
        "YANDEX_CLIENT_SECRET": "s",
        "LEGACY_ALIASES": (("SECRET_KEY", "SESSION_SIGNING_KEY"),),
    }
    assert [(f.status, f.code, f.params) for f in doctor.check_config(cfg)] == [
        (doctor.OK, "config_ok", {"env": "production", "url": "http://xn--e1aarfksbg.xn--p1ai"}),
        (doctor.WARN, "public_url_plain_http", {"url": "http://xn--e1aarfksbg.xn--p1ai"}),
        (doctor.WARN, "legacy_alias", {"old": "SECRET_KEY", "new": "SESSION_SIGNING_KEY"}),
    ]
    assert [(f.status, f.code) for f in doctor.check_config({"APP_ENV": "development", "PUBLIC_URL": ""})] == [
        (doctor.FAIL, "public_url_missing"),
        (doctor.WARN, "yandex_app_missing"),
    ]
