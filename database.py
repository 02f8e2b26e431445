"""Storage: the schema, the engine for SQLite or PostgreSQL, transactions and migrations.

SQLite (default, `DATABASE_PATH`) runs in WAL mode with a busy timeout and foreign keys; write
transactions start with BEGIN IMMEDIATE so two writers queue on the busy timeout instead of failing
half-way with SQLITE_BUSY when a read transaction tries to upgrade. PostgreSQL is used when
`DATABASE_URL` is set. Schema changes go through Alembic (`migrations/`), run by `flask db upgrade`
and automatically at start-up when AUTO_MIGRATE is on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

ROOT = Path(__file__).resolve().parent
metadata = sa.MetaData()

portals = sa.Table(
    "portals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("member_id", sa.String(64), nullable=False, unique=True),
    sa.Column("domain", sa.String(255), nullable=False),
    sa.Column("client_endpoint", sa.String(512), nullable=False),
    sa.Column("server_endpoint", sa.String(512), nullable=False),
    sa.Column("application_token_hash", sa.String(64)),
    sa.Column("admin_token_hash", sa.String(64)),
    # The portal's own X-API-Token expires (PORTAL_API_TOKEN_TTL_DAYS); NULL with a hash reads as expired.
    sa.Column("admin_token_issued_at", sa.Integer),
    sa.Column("admin_token_expires_at", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False, server_default="installed"),
    sa.Column("app_status", sa.String(4)),
    sa.Column("scope", sa.Text),
    sa.Column("version", sa.String(32)),
    sa.Column("language", sa.String(8)),
    sa.Column("admin_user_id", sa.Integer),
    sa.Column("bot_id", sa.Integer),
    sa.Column("installed_at", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Integer, nullable=False),
    sa.Column("uninstalled_at", sa.Integer),
    # The version whose set-up (bot, event bindings) succeeded: set-up runs once per version.
    sa.Column("setup_version", sa.String(32)),
    # An ONAPPUNINSTALL that could not be proven yet (OAuth server unreachable): the task run re-checks it.
    sa.Column("uninstall_pending_at", sa.Integer),
    sa.Column("uninstall_pending_clean", sa.Boolean, nullable=False, server_default=sa.false()),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    # bitrix24: member_id; yandex: Yandex account id; amocrm: account subdomain.
    sa.Column("account", sa.String(128), nullable=False),
    # bitrix24: "portal" (installing user's token) or "user:<id>"; others: "account".
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE")),
    sa.Column("user_id", sa.Integer),
    sa.Column("label", sa.String(255)),
    sa.Column("endpoint", sa.String(512)),
    sa.Column("access_token_enc", sa.Text, nullable=False),
    sa.Column("refresh_token_enc", sa.Text),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("refresh_expires_at", sa.Integer),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("failure_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(64)),
    sa.Column("last_error_at", sa.Integer),
    # Set when an attempt's outcome is unknown (timeout, dropped response): the provider may have
    # rotated the pair; an invalid_grant on the next try then means the response was lost.
    sa.Column("unconfirmed_attempt", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lease_owner", sa.String(96)),
    sa.Column("lease_until", sa.Float),
    # Set by the lease holder right before its refresh request goes out, cleared when the lease is
    # given back: whoever takes over an expired lease knows whether a request may have been answered.
    sa.Column("refresh_sent_at", sa.Float),
    sa.Column("refreshed_at", sa.Integer),
    sa.Column("last_used_at", sa.Integer),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Integer, nullable=False),
    sa.UniqueConstraint("provider", "account", "subject", name="uq_credentials_identity"),
)
sa.Index("ix_credentials_due", credentials.c.status, credentials.c.expires_at)

credential_history = sa.Table(
    "credential_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("credential_id", sa.Integer, sa.ForeignKey("credentials.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("access_token_enc", sa.Text, nullable=False),
    sa.Column("refresh_token_enc", sa.Text),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("replaced_at", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.UniqueConstraint("credential_id", "version", name="uq_history_version"),
)

task_runs = sa.Table(
    "task_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(36), nullable=False, unique=True),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(16)),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("duration_ms", sa.Integer),
    sa.Column("report", sa.Text),
)

metric_counters = sa.Table(
    "metric_counters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("labels", sa.String(255), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
)

# One connect link of an outside account (Yandex, amoCRM): issued → opened (confirmation page, nonce cookie
# set) → sent (the user pressed "Connect", redirected with `state`) → done (the callback). Each step is a
# conditional UPDATE, so a link, a confirmation and a state each work once, on every worker.
connect_links = sa.Table(
    "connect_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(16), nullable=False),
    # "portal" (the portal's account), "personal" (one employee's own), "global" (amoCRM by the operator).
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE")),
    sa.Column("user_id", sa.Integer),
    sa.Column("user_name", sa.String(120)),
    sa.Column("lang", sa.String(8)),
    sa.Column("ticket_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("state_hash", sa.String(64), unique=True),
    sa.Column("nonce_hash", sa.String(64)),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("finished_at", sa.Integer),
)
sa.Index("ix_connect_links_expires", connect_links.c.expires_at)
# OAuth code flow (/auth/bitrix24): one row per `state` sent to a portal's consent page; spent once, and
# only by the browser holding the nonce cookie. Only hashes are stored.
oauth_states = sa.Table(
    "oauth_states",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("nonce_hash", sa.String(64), nullable=False),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("used_at", sa.Integer),
)
sa.Index("ix_oauth_states_expires", oauth_states.c.expires_at)
# Failed secret-token attempts per (scope, client address) in the current window: every gunicorn worker
# sees the same count, so a burst spread over the workers is still one burst.
auth_failures = sa.Table(
    "auth_failures",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("client", sa.String(64), primary_key=True),
    sa.Column("window_start", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
)

# Requests per (endpoint group, client) in the current fixed window: models/ratelimit.py.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("client", sa.String(64), primary_key=True),
    sa.Column("window_start", sa.Integer, nullable=False),
    sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255)),
    sa.Column("detail", sa.Text),
)

# Conferences (issue 8): one row per Telemost meeting the app made, owner-scoped within a portal.
# `starts_at`/`ends_at` are UTC seconds (the creation time for meetings without a date) so history
# sorts and splits upcoming/past with one index; lists of ids and e-mails are JSON text.
conferences = sa.Table(
    "conferences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("owner_name", sa.String(255)),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("search_name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("start_date", sa.String(10)),
    sa.Column("start_time", sa.String(5)),
    sa.Column("duration_minutes", sa.Integer, nullable=False),
    sa.Column("timezone", sa.String(64)),
    sa.Column("starts_at", sa.Integer, nullable=False),
    sa.Column("ends_at", sa.Integer, nullable=False),
    sa.Column("cohosts", sa.Text, nullable=False, server_default="[]"),
    sa.Column("create_calendar_event", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("invite_users", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("invitees", sa.Text, nullable=False, server_default="[]"),
    sa.Column("viewers", sa.Text, nullable=False, server_default="[]"),
    sa.Column("live_stream_title", sa.String(1024)),
    sa.Column("live_stream_description", sa.Text),
    sa.Column("waiting_room_level", sa.String(16), nullable=False, server_default="PUBLIC"),
    sa.Column("telemost_id", sa.String(32)),
    sa.Column("link", sa.String(512)),
    sa.Column("watch_url", sa.String(512)),
    sa.Column("calendar_event_id", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failed_step", sa.String(32)),
    sa.Column("failure_code", sa.String(64)),
    # Notifications not delivered yet ([{user_id, kind}]); a retry sends exactly these.
    sa.Column("pending_notifications", sa.Text, nullable=False, server_default="[]"),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Integer, nullable=False),
    # The CRM record the conference was made from ({"entity","id"} as canonical JSON text, models/crm).
    sa.Column("crm_binding", sa.String(64)),
    # The row as the history list's JSON item (every public field), written by the database on every
    # insert and update: a generated column on SQLite, a trigger on PostgreSQL (migration 0006).
    sa.Column("list_item", sa.Text, server_default=sa.FetchedValue(), server_onupdate=sa.FetchedValue()),
    sa.UniqueConstraint("portal_id", "owner_id", "idempotency_key", name="uq_conferences_idempotency"),
)
# The history list reads pages in (starts_at, id) order and counts by ends_at and status: all four in the
# index so the count and the filters never visit the table (models/conference.py `_list_statements`).
sa.Index(
    "ix_conferences_owner_start",
    conferences.c.portal_id,
    conferences.c.owner_id,
    conferences.c.starts_at,
    conferences.c.id,
    conferences.c.ends_at,
    conferences.c.status,
)
sa.Index("ix_conferences_type", conferences.c.type)
sa.Index("ix_conferences_crm", conferences.c.portal_id, conferences.c.crm_binding)
sa.Index("ix_conferences_status", conferences.c.status)

# The history list's total per (portal, owner): listed conferences (status other than "creating"), kept by
# triggers on conferences in the same transaction as each write (migration 0006), never written by the app.
conference_totals = sa.Table(
    "conference_totals",
    metadata,
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("owner_id", sa.Integer, primary_key=True),
    sa.Column("total", sa.Integer, nullable=False, server_default="0"),
)

# Yandex accounts that answered ApiRestrictedToOrganizations: the UI says so instead of failing every create.
telemost_restrictions = sa.Table(
    "telemost_restrictions",
    metadata,
    sa.Column("credential_id", sa.Integer, sa.ForeignKey("credentials.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("restricted_at", sa.Integer, nullable=False),
)


# ---- Open Lines bot (migration 0007_openlines) --------------------------------------------------------

bot_settings = sa.Table(
    "bot_settings",
    metadata,
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("greeting", sa.Text),
    sa.Column("timezone", sa.String(64)),
    # "operator" = imopenlines.bot.session.operator; "queue" = …transfer to queue_id.
    sa.Column("transfer_mode", sa.String(16), nullable=False, server_default="operator"),
    sa.Column("queue_id", sa.String(32)),
    sa.Column("bot_registered_version", sa.String(32)),
    sa.Column("session_finish_bound", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.Integer, nullable=False),
)

bot_lines = sa.Table(
    "bot_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
    sa.Column("line_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("attached_at", sa.Integer),
    # JSON {"mon": [["09:00", "18:00"]], …}; NULL = open round the clock.
    sa.Column("schedule", sa.Text),
    sa.Column("out_of_hours_text", sa.Text),
    sa.Column("out_of_hours_action", sa.String(16), nullable=False, server_default="queue"),
    sa.Column("updated_at", sa.Integer, nullable=False),
    sa.UniqueConstraint("portal_id", "line_id", name="uq_bot_lines_line"),
)

bot_inbox = sa.Table(
    "bot_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
    # Deduplicates deliveries: Bitrix24 may deliver the same event twice; the second insert is refused.
    sa.Column("event_key", sa.String(128), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(96)),
    sa.Column("lease_until", sa.Float),
    sa.Column("last_error", sa.String(64)),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("processed_at", sa.Float),
    sa.UniqueConstraint("portal_id", "event_key", name="uq_bot_inbox_key"),
)
sa.Index("ix_bot_inbox_ready", bot_inbox.c.status, bot_inbox.c.next_attempt_at)

# One row per chat the bot must act on (hand-off, or the one private answer): its unique key and the
# conditional claim make the action happen once however many deliveries and workers there are.
bot_handoffs = sa.Table(
    "bot_handoffs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
    sa.Column("chat_key", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("notice_sent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("method", sa.String(64)),
    sa.Column("outcome", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(96)),
    sa.Column("lease_until", sa.Float),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("done_at", sa.Integer),
    sa.UniqueConstraint("portal_id", "chat_key", name="uq_bot_handoffs_chat"),
)

dialogs = sa.Table(
    "dialogs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id", ondelete="CASCADE"), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("dialog_id", sa.String(64), nullable=False),
    sa.Column("line_id", sa.String(32)),
    sa.Column("connector", sa.String(64)),
    sa.Column("entity_id", sa.String(255)),
    sa.Column("client_id", sa.String(64)),
    sa.Column("client_name", sa.String(255)),
    sa.Column("crm_bindings", sa.Text),
    sa.Column("language", sa.String(8)),
    sa.Column("first_message", sa.Text),
    sa.Column("status", sa.String(16), nullable=False, server_default="new"),
    sa.Column("transfer_outcome", sa.String(64)),
    sa.Column("transferred_at", sa.Integer),
    sa.Column("out_of_hours", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("session_id", sa.String(32)),
    sa.Column("finished_at", sa.Integer),
    sa.Column("history_fetched_at", sa.Integer),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Integer, nullable=False),
    sa.Column("last_message_at", sa.Integer),
    sa.UniqueConstraint("portal_id", "chat_id", name="uq_dialogs_chat"),
)
sa.Index("ix_dialogs_portal_created", dialogs.c.portal_id, dialogs.c.created_at)

dialog_messages = sa.Table(
    "dialog_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dialog_pk", sa.Integer, sa.ForeignKey("dialogs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("message_id", sa.String(32), nullable=False),
    sa.Column("author_kind", sa.String(16), nullable=False),
    sa.Column("author_id", sa.String(64)),
    sa.Column("text", sa.Text),
    sa.Column("sent_at", sa.Integer, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.UniqueConstraint("dialog_pk", "message_id", name="uq_dialog_messages_id"),
)


def make_url(database_url: str, database_path: str) -> str:
    """The SQLAlchemy URL: DATABASE_URL when set (postgresql:// → psycopg 3), else SQLite at the path."""
    if database_url:
        if database_url.startswith("postgres://"):
            database_url = "postgresql://" + database_url[len("postgres://") :]
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
        return database_url
    if database_path != ":memory:":
        Path(database_path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{database_path}"


class Database:
    """One engine per process with the transaction helpers the models use."""

    def __init__(self, url: str, pool_size: int = 20):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        if self.is_sqlite:
            self.engine = sa.create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"timeout": 30, "check_same_thread": False},
                hide_parameters=True,  # errors must not carry tokens or hashes into the logs
            )
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)
            sa.event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.engine = sa.create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
            )

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A short write transaction (BEGIN IMMEDIATE on SQLite); commits on success."""
        # SQLite has one writer at a time. Threads of this process queue on a lock that wakes the
        # next one at once, instead of on SQLite's busy handler, which sleeps in growing steps;
        # other processes still wait on busy_timeout.
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(immediate=True)
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                conn.info.pop(AFTER_COMMIT, None)  # rolled back: nothing to announce
                raise
            callbacks = conn.info.pop(AFTER_COMMIT, [])
        for callback in callbacks:  # after the commit, outside the write lock and the connection
            callback()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read_cursor(self) -> Iterator:
        """A driver cursor in a read-only transaction, for the hottest reads (no SQLAlchemy per-call work).

        Statements must be compiled for this dialect beforehand (see models/conference.py `_Prepared`).
        """
        dbapi_conn = self.engine.raw_connection()
        try:
            cursor = dbapi_conn.cursor()
            try:
                if self.is_sqlite:
                    cursor.execute("BEGIN")  # the driver runs in autocommit mode (see _sqlite_on_connect)
                yield cursor
            finally:
                cursor.close()
        finally:
            dbapi_conn.close()  # back to the pool, whose reset rolls the read transaction back

    def ping(self) -> None:
        """Raise if the database cannot answer a query or lacks the schema."""
        with self.read() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(portals))

    def check_connection(self) -> None:
        """Raise if the database cannot be reached (the schema may not exist yet)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def upgrade(self) -> None:
        """Apply Alembic migrations up to head."""
        from alembic import command

        with self.engine.connect() as conn:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def dispose(self) -> None:
        """Close pooled connections (tests, forks)."""
        self.engine.dispose()


def alembic_config(url: str):
    """Alembic configuration pointing at migrations/ without an ini file."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" event below emits BEGIN itself.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("immediate"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


AFTER_COMMIT = "after_commit"


def after_commit(conn: Connection, callback) -> None:
    """Run `callback()` once the write transaction of `conn` (a `Database.write` connection) has committed."""
    conn.info.setdefault(AFTER_COMMIT, []).append(callback)


def record_task_run(
    db: Database,
    run_id: str,
    task: str,
    trigger: str,
    started: float,
    *,
    provider: str | None = None,
    finished: float | None = None,
    duration_ms: int | None = None,
    report: dict | None = None,
) -> None:
    """Write a cron task's run to `task_runs` (start, then again with its end and report)."""
    import json

    with db.write() as conn:
        if finished is None:
            conn.execute(
                sa.insert(task_runs).values(
                    run_id=run_id, task=task, trigger=trigger, provider=provider, started_at=started
                )
            )
        else:
            conn.execute(
                sa.update(task_runs)
                .where(task_runs.c.run_id == run_id)
                .values(
                    finished_at=finished,
                    duration_ms=duration_ms if duration_ms is not None else int((finished - started) * 1000),
                    report=json.dumps(report) if report is not None else None,
                )
            )


def now() -> int:
    """Unix time in whole seconds (stored times are integers)."""
    return int(time.time())


def init_app(app) -> Database:
    """Create the engine for this app, migrate in development, register `flask db upgrade`."""
    import click

    cfg = app.config
    db = Database(
        make_url(cfg["DATABASE_URL"], cfg["DATABASE_PATH"]),
        pool_size=max(10, int(cfg["REFRESH_CONCURRENCY"]) + 4),
    )
    app.extensions["db"] = db
    if cfg["AUTO_MIGRATE"]:
        db.upgrade()

    @app.cli.group("db")
    def db_group():
        """Database commands."""

    @db_group.command("upgrade")
    def upgrade_command():
        """Apply migrations up to the newest schema."""
        db.upgrade()
        click.echo("database is at the newest schema")

    return db
