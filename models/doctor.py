"""`flask doctor`: checks of everything the app depends on, as findings (status + stable code + params).

Each check is a plain function over the services; network calls go through the existing clients. No words
here: the CLI (routes/doctor.py) renders each finding with its fix from routes/i18n/legacy.py
(`doctor.<code>`, `doctor.fix.<code>`). A FAIL means the app does not work as it should (exit 1); a WARN is
worth a look but breaks nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from database import Database, alembic_config, bot_lines, portals, task_runs
from models.bitrix24 import Bitrix24AuthError, Bitrix24Error, Bitrix24Unavailable
from models.oauth import OAuthError
from models.telemost import RECONNECT, RESTRICTED, TelemostApi, TelemostError
from models.vault import ACCOUNT_SUBJECT, ACTIVE, BROKEN, NEEDS_REAUTH, PORTAL_SUBJECT

OK, WARN, FAIL = "ok", "warn", "fail"

# The handlers set-up binds on every portal (install, update): "event name" → path under PUBLIC_URL.
REQUIRED_EVENTS = {"ONAPPUNINSTALL": "/events", "ONAPPUPDATE": "/events"}
# Cron runs every 5 minutes; a run older than this means cron stopped (or never started).
STALE_RUN_SECONDS = 30 * 60
REFRESH_TASK = "refresh"
EVENTS_TASK = "process-events"
# The command cron runs for each task (what a fix names).
TASK_COMMANDS = {REFRESH_TASK: "flask --app app tokens refresh", EVENTS_TASK: "flask --app app bot process-events"}


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked (`area`, `subject`), how it went, and why (code + params)."""

    area: str
    status: str
    code: str
    subject: str = ""
    params: dict = field(default_factory=dict)


def _failed(findings: list[Finding]) -> bool:
    return any(f.status == FAIL for f in findings)


# ---- configuration and database -------------------------------------------------------------------------


def check_config(cfg) -> list[Finding]:
    """Settings that start-up accepts but that still deserve attention."""
    out: list[Finding] = []
    url = str(cfg.get("PUBLIC_URL") or "")
    if not url:
        out.append(Finding("config", FAIL, "public_url_missing"))
    elif url.startswith("http://") and cfg.get("APP_ENV") == "production":
        out.append(Finding("config", WARN, "public_url_plain_http", params={"url": url}))
    for old, new in cfg.get("LEGACY_ALIASES") or ():
        out.append(Finding("config", WARN, "legacy_alias", subject=old, params={"old": old, "new": new}))
    if not cfg.get("YANDEX_CLIENT_ID") or not cfg.get("YANDEX_CLIENT_SECRET"):
        out.append(Finding("config", WARN, "yandex_app_missing"))
    if not _failed(out):
        out.insert(0, Finding("config", OK, "config_ok", params={"env": cfg.get("APP_ENV"), "url": url}))
    return out


def check_database(db: Database) -> list[Finding]:
    """The database answers and its schema is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        with db.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except sa.exc.SQLAlchemyError as exc:
        return [Finding("database", FAIL, "database_unreachable", params={"error": type(exc).__name__})]
    heads = set(ScriptDirectory.from_config(alembic_config(db.url)).get_heads())
    params = {
        "dialect": db.engine.dialect.name,
        "current": ", ".join(sorted(current)) or "-",
        "head": ", ".join(sorted(heads)),
    }
    if current != heads:
        return [Finding("database", FAIL, "migrations_behind", params=params)]
    return [Finding("database", OK, "database_ok", params=params)]


# ---- Bitrix24 ---------------------------------------------------------------------------------------------


def check_oauth_server(services) -> list[Finding]:
    """The Bitrix24 OAuth server answers (an unknown token must get a clean refusal, not a 5xx or silence)."""
    oauth = services.bitrix_oauth
    try:
        oauth.app_info(f"doctor-{uuid.uuid4().hex}")
    except OAuthError as exc:
        # A clean refusal names an OAuth error; "http_<status>" means no JSON error came back (a wrong URL,
        # a proxy's error page), which is not the OAuth server either.
        if not exc.permanent or exc.code.startswith("http_"):
            return [Finding("oauth", FAIL, "oauth_server_down", params={"url": oauth.oauth_url, "error": exc.code})]
    return [Finding("oauth", OK, "oauth_server_ok", params={"url": oauth.oauth_url})]


def _credential_finding(area: str, subject: str, cred) -> Finding | None:
    if cred is None:
        return Finding(area, FAIL, f"{area}_credential_missing", subject=subject)
    if cred.status == NEEDS_REAUTH:
        return Finding(area, FAIL, f"{area}_needs_reauth", subject=subject, params={"error": cred.last_error or "-"})
    if cred.status == BROKEN:
        return Finding(area, FAIL, f"{area}_broken", subject=subject)
    if cred.status != ACTIVE:
        return Finding(area, FAIL, f"{area}_inactive", subject=subject, params={"state": cred.status})
    return None


def _rest_failure(subject: str, exc: Bitrix24Error) -> Finding:
    if isinstance(exc, Bitrix24AuthError):
        return Finding("portal", FAIL, "portal_auth_failed", subject=subject, params={"error": exc.code})
    if isinstance(exc, Bitrix24Unavailable) or exc.code == "PORTAL_ADDRESS_REFUSED":
        return Finding("portal", FAIL, "portal_unreachable", subject=subject, params={"error": exc.code})
    return Finding("portal", FAIL, "portal_refused", subject=subject, params={"error": exc.code})


def check_portal(services, portal, *, bot_code: str, public_url: str) -> list[Finding]:
    """One installed portal: its credential, its REST endpoint, the bot and the event handlers."""
    subject = f"{portal.domain} ({portal.member_id})"
    cred = services.vault.find("bitrix24", portal.member_id, PORTAL_SUBJECT)
    problem = _credential_finding("portal", subject, cred)
    if problem is not None:
        return [problem]
    client = services.portals.client(portal, cred.id)
    try:
        bots = client.call("imbot.bot.list").result
        bound = client.call("event.get").result
    except Bitrix24Error as exc:
        return [_rest_failure(subject, exc)]
    out: list[Finding] = []
    codes = {
        str(b.get("CODE")) for b in (bots.values() if isinstance(bots, dict) else bots or []) if isinstance(b, dict)
    }
    if bot_code not in codes:
        out.append(Finding("portal", FAIL, "bot_not_registered", subject=subject, params={"code": bot_code}))
    base = public_url.rstrip("/")
    have = {(str(h.get("event", "")).upper(), str(h.get("handler", ""))) for h in bound or [] if isinstance(h, dict)}
    missing = [event for event, path in REQUIRED_EVENTS.items() if (event, f"{base}{path}") not in have]
    if missing:
        out.append(
            Finding(
                "portal",
                FAIL,
                "events_not_bound",
                subject=subject,
                params={"events": ", ".join(missing), "handler": f"{base}/events"},
            )
        )
    return out or [Finding("portal", OK, "portal_ok", subject=subject)]


def check_portals(services, cfg) -> list[Finding]:
    """Every installed portal (none installed is only a warning: a fresh deployment)."""
    installed = [p for p in services.portals.list() if p.installed]
    if not installed:
        return [Finding("portal", WARN, "no_portals")]
    out: list[Finding] = []
    for portal in installed:
        out += check_portal(services, portal, bot_code=cfg["BOT_CODE"], public_url=cfg["PUBLIC_URL"])
    return out


# ---- Yandex Telemost and outside accounts -------------------------------------------------------------------


def check_telemost(services) -> list[Finding]:
    """The Telemost API answers: an unknown token must get a clean 401 (a 404 means a wrong TELEMOST_API_URL)."""
    api = TelemostApi(services.telemost.session, services.telemost.base_url, services.telemost.timeout, retries=0)
    try:
        api.request(f"doctor-{uuid.uuid4().hex}", "GET", "/conferences/0")
    except TelemostError as exc:
        if exc.code not in (RECONNECT, RESTRICTED):
            return [Finding("telemost", FAIL, "telemost_down", params={"url": api.base_url, "error": exc.code})]
    return [Finding("telemost", OK, "telemost_ok", params={"url": api.base_url})]


def _account_rows(services, provider: str) -> list[dict]:
    return services.vault.list(provider=provider, limit=10000)


def check_yandex_accounts(services) -> list[Finding]:
    """Each connected Yandex account: its credential, and a cheap authenticated call (Yandex ID info)."""
    out: list[Finding] = []
    for row in _account_rows(services, "yandex"):
        subject = str(row.get("label") or row["account"])
        if row["subject"] != ACCOUNT_SUBJECT:
            subject = f"{subject} ({row['subject']})"
        cred = services.engine.ensure_fresh(row["id"]) if row["status"] == ACTIVE else services.vault.get(row["id"])
        problem = _credential_finding("yandex", subject, cred)
        if problem is not None:
            out.append(problem)
            continue
        try:
            services.yandex.user_info(cred.access_token)
        except OAuthError as exc:
            code = "yandex_unreachable" if not exc.permanent else "yandex_token_refused"
            out.append(Finding("yandex", FAIL, code, subject=subject, params={"error": exc.code}))
            continue
        out.append(Finding("yandex", OK, "yandex_ok", subject=subject))
    if services.integrations.env_yandex_token:
        # The single-portal fallback token (YANDEX_OAUTH_TOKEN) has no refresh: it just works or not.
        try:
            services.yandex.user_info(services.integrations.env_yandex_token)
        except OAuthError as exc:
            code = "yandex_unreachable" if not exc.permanent else "yandex_token_refused"
            out.append(Finding("yandex", FAIL, code, subject="YANDEX_OAUTH_TOKEN", params={"error": exc.code}))
        else:
            out.append(Finding("yandex", OK, "yandex_ok", subject="YANDEX_OAUTH_TOKEN"))
    return out


def check_amocrm_accounts(services) -> list[Finding]:
    """Each amoCRM account: its credential and GET /api/v4/account with its token."""
    out: list[Finding] = []
    for row in _account_rows(services, "amocrm"):
        subject = row["account"]
        cred = services.engine.ensure_fresh(row["id"]) if row["status"] == ACTIVE else services.vault.get(row["id"])
        problem = _credential_finding("amocrm", subject, cred)
        if problem is None and cred.expires_at <= time.time():
            problem = Finding("amocrm", FAIL, "amocrm_expired", subject=subject)
        if problem is not None:
            out.append(problem)
            continue
        try:
            services.amocrm.account_info(subject, cred.access_token)
        except OAuthError as exc:
            code = "amocrm_unreachable" if not exc.permanent else "amocrm_token_refused"
            out.append(Finding("amocrm", FAIL, code, subject=subject, params={"error": exc.code}))
            continue
        out.append(Finding("amocrm", OK, "amocrm_ok", subject=subject))
    return out


# ---- cron runs -------------------------------------------------------------------------------------------------


def _last_run(db: Database, task: str) -> float | None:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.max(task_runs.c.started_at)).where(task_runs.c.task == task)).scalar()


def bot_attached(db: Database) -> bool:
    """True when an installed portal has the bot attached to an Open Lines line (the bot's `bot_lines` table)."""
    with db.read() as conn:
        lines = bot_lines
        return (
            conn.execute(
                sa.select(lines.c.portal_id)
                .join(portals, portals.c.id == lines.c.portal_id)
                .where(lines.c.attached_at.is_not(None), portals.c.status == "installed")
                .limit(1)
            ).first()
            is not None
        )


def check_runs(db: Database, *, has_credentials: bool = True, now: float | None = None) -> list[Finding]:
    """The age of the last token-refresh run and of the last bot event-processing run.

    A missing or stale run fails only when it matters: refresh once a credential is stored (a fresh
    deployment has nothing to refresh yet), event processing once a portal has the bot attached to a line.
    """
    now = time.time() if now is None else now
    out: list[Finding] = []
    attached = bot_attached(db)
    for task, required in ((REFRESH_TASK, has_credentials), (EVENTS_TASK, attached)):
        started = _last_run(db, task)
        params = {"task": task, "command": TASK_COMMANDS[task]}
        if started is None:
            out.append(Finding("tasks", FAIL if required else WARN, "task_never_ran", subject=task, params=params))
        elif now - started > STALE_RUN_SECONDS:
            params["minutes"] = int((now - started) // 60)
            out.append(Finding("tasks", FAIL if required else WARN, "task_stale", subject=task, params=params))
        else:
            params["minutes"] = int((now - started) // 60)
            out.append(Finding("tasks", OK, "task_ok", subject=task, params=params))
    return out


def run_checks(services, cfg) -> list[Finding]:
    """Every check, in report order; the database first (the rest reads it)."""
    findings = check_config(cfg) + check_database(services.db)
    if findings[-1].code == "database_unreachable":
        return findings
    findings += check_oauth_server(services)
    findings += check_portals(services, cfg)
    findings += check_telemost(services)
    findings += check_yandex_accounts(services)
    findings += check_amocrm_accounts(services)
    findings += check_runs(services.db, has_credentials=bool(services.vault.summary()))
    return findings


def exit_code(findings: list[Finding]) -> int:
    """1 when any check failed, else 0 (warnings do not fail)."""
    return 1 if _failed(findings) else 0
