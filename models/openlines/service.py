"""The Open Lines bot service: the events inbox, dialogs, working hours and the hand-off to an operator.

Request path (`accept`): authenticate the event, refuse stale ones, write it to the inbox (a unique key
makes a second delivery a no-op) and return; nothing else. The work (`process_ready`) runs in a
per-process background thread woken after the commit, and in the cron run for whatever is left: rows are
claimed with a lease (conditional UPDATE, like the token keeper's), REST calls happen outside any
transaction, failures back off. The hand-off of a chat happens once: its `bot_handoffs` row has a unique
key and is claimed the same way; a retry after a lost answer sees WRONG_CHAT ("operator is not a bot")
and records the dialog as already with an operator.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import (
    Database,
    bot_handoffs,
    bot_inbox,
    bot_lines,
    bot_settings,
    dialog_messages,
    dialogs,
    now,
    portals,
    record_task_run,
)
from models import forms
from models.audit import AuditLog
from models.bitrix24 import Bitrix24Error, Bitrix24Unavailable
from models.errors import ServiceError
from models.openlines import events as ev
from models.openlines.history import parse_history
from models.openlines.hours import is_open, timezone
from models.openlines.intake import Delivery, InboxIntake
from models.openlines.queries import DialogQueries
from models.openlines.settings import BotSettingsStore

log = logging.getLogger(__name__)

TRANSIENT_CODES = {
    "QUERY_LIMIT_EXCEEDED",
    "OPERATION_TIME_LIMIT",
    "OVERLOAD_LIMIT",
    "INTERNAL_SERVER_ERROR",
    "ERROR_UNEXPECTED_ANSWER",
    "NO_CREDENTIAL",
    "expired_token",
    "invalid_token",
    "network_error",
    "bad_response",
}
# imopenlines.bot.session.* answers this when the chat is no longer the bot's (an operator has it).
ALREADY_WITH_OPERATOR = {"WRONG_CHAT"}
DEFAULT_TEXTS = {"private_reply": {}, "out_of_hours": {}}


class Transient(Exception):
    """A step failed in a way worth retrying later (portal down, rate limit, token being renewed)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def is_transient(exc: Bitrix24Error) -> bool:
    """Portal outages, rate limits and token trouble are retried; other answers are final."""
    return (
        isinstance(exc, Bitrix24Unavailable)
        or exc.code in TRANSIENT_CODES
        or (exc.status is not None and (exc.status >= 500 or exc.status == 429))
    )


@dataclass(frozen=True)
class BotConfig:
    """What the bot service needs from the config."""

    max_age: int = 900
    lease_seconds: float = 120.0
    max_attempts: int = 12
    backoff_seconds: float = 30.0
    batch_size: int = 200
    timezone: str = "Europe/Moscow"
    history_check_seconds: int = 600
    inbox_keep_days: int = 7
    background: bool = True
    public_url: str = ""
    bot_code: str = ""
    bot_name: str = ""

    @classmethod
    def from_config(cls, cfg) -> BotConfig:
        """Read the BOT_* settings."""
        return cls(
            max_age=int(cfg["BOT_EVENT_MAX_AGE_SECONDS"]),
            lease_seconds=float(cfg["BOT_LEASE_SECONDS"]),
            max_attempts=int(cfg["BOT_MAX_ATTEMPTS"]),
            backoff_seconds=float(cfg["BOT_BACKOFF_SECONDS"]),
            batch_size=int(cfg["BOT_BATCH_SIZE"]),
            timezone=str(cfg["BOT_TIMEZONE"]),
            history_check_seconds=int(cfg["BOT_HISTORY_CHECK_SECONDS"]),
            inbox_keep_days=int(cfg["BOT_INBOX_KEEP_DAYS"]),
            background=bool(cfg["BOT_BACKGROUND_WORKER"]),
            public_url=str(cfg["PUBLIC_URL"]),
            bot_code=str(cfg["BOT_CODE"]),
            bot_name=str(cfg["BOT_NAME"]),
        )


@dataclass
class Accepted:
    """The answer to one delivered event."""

    event: str
    portal_id: int
    duplicate: bool


@dataclass
class ProcessReport:
    """What one processing pass did."""

    run_id: str
    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    handed_off: int = 0
    history_fetched: int = 0
    pruned: int = 0
    left: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready report."""
        return dict(self.__dict__)


def _insert(conn):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


EVENTS_TASK = "process-events"


class OpenLinesService(BotSettingsStore, DialogQueries):
    """Bot events in, dialogs stored, chats handed to operators; settings and queries for the API."""

    def __init__(self, db: Database, portals_service, config: BotConfig, audit: AuditLog | None = None):
        self.db = db
        self.portals = portals_service
        self.config = config
        self.audit = audit
        # Reply words come from the route layer's catalog (routes/bot.py init_app): models hold none.
        self.texts: dict[str, dict[str, str]] = {k: dict(v) for k, v in DEFAULT_TEXTS.items()}
        self._worker: InboxWorker | None = None
        # Lookups reused for the rows of one claimed batch (per thread; dropped when the pass ends).
        self._pass = threading.local()
        self._last_request = 0.0
        self._worker_lock = threading.Lock()
        self._intake = InboxIntake(db)

    # ---- request path ----------------------------------------------------------------------------

    def accept(self, event: str, payload: dict) -> Accepted:
        """Authenticate a bot event and write it to the inbox; raises Rejected (403) on a forged one."""
        from models.portal import Rejected

        auth = payload.get("auth") if isinstance(payload.get("auth"), dict) else {}
        ts = forms.integer(payload, "ts")
        current = time.time()
        self._last_request = time.monotonic()
        # Everything that needs no database is done here, outside the shared transaction; the portal and its
        # switch are read inside it (intake.py), so no lookup is cached that an uninstall could leave stale
        # and an event never outruns a switch-off.
        delivery = self._intake.submit(
            Delivery(
                member_id=forms.text(auth, "member_id", 64),
                application_token=forms.text(auth, "application_token"),
                event=event,
                key=ev.event_key(event, payload),
                received_at=current,
                fresh=ts is not None and current - self.config.max_age <= ts <= current + 300,
                payload=json.dumps(ev.inbox_payload(event, payload, keep_content=True), ensure_ascii=False),
                routing_payload=lambda: json.dumps(
                    ev.inbox_payload(event, payload, keep_content=False), ensure_ascii=False
                ),
            )
        )
        if delivery.error is not None:
            raise delivery.error
        if delivery.refusal:
            raise Rejected(delivery.refusal, status=403)
        return Accepted(event, delivery.portal_id, duplicate=delivery.duplicate)

    def wake(self) -> None:
        """Nudge this process's worker (started on first use, after any fork) to process the inbox."""
        if not self.config.background:
            return
        with self._worker_lock:
            if self._worker is None or not self._worker.alive():
                self._worker = InboxWorker(self)
                self._worker.start()
        self._worker.wake()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the background worker is idle (tests, shutdown); True when it is."""
        worker = self._worker
        return worker.wait_idle(timeout) if worker else True

    # ---- processing ------------------------------------------------------------------------------

    def process_ready(
        self, *, limit: int | None = None, budget_s: float = 60.0, trigger: str = "worker", owner: str | None = None
    ) -> ProcessReport:
        """Process inbox rows that are due (claimed under a lease), then look for finished sessions."""
        report = ProcessReport(run_id=str(uuid.uuid4()))
        owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{threading.get_ident()}:{report.run_id[:8]}"
        deadline = time.monotonic() + budget_s
        run_started = time.time()
        if trigger != "worker":  # cron/CLI runs are what `flask doctor` and alerts watch
            record_task_run(self.db, report.run_id, EVENTS_TASK, trigger, run_started)
        remaining = limit or 1_000_000
        # Rows this pass retries are due again only after it started: one attempt per row per pass.
        started = time.time()
        self._pass.cache = {}
        try:
            self._process_batches(owner, report, remaining, started, deadline, trigger)
        finally:
            self._pass.cache = None
        if trigger != "worker" and time.monotonic() < deadline:
            self.sweep_finished_sessions(report, deadline)
            report.pruned = self.prune_inbox()
        report.left = self.backlog()
        if trigger != "worker":
            record_task_run(
                self.db, report.run_id, EVENTS_TASK, trigger, run_started, finished=time.time(), report=report.as_dict()
            )
        if report.claimed or trigger != "worker":
            log.info("bot inbox %s run: %s", trigger, report.as_dict())
        return report

    def _cached(self, key, load):
        cache = getattr(self._pass, "cache", None)
        if cache is None:
            return load()
        if key not in cache:
            cache[key] = load()
        return cache[key]

    def _process_batches(
        self, owner: str, report: ProcessReport, remaining: int, started: float, deadline: float, trigger: str
    ) -> None:
        while remaining > 0 and time.monotonic() < deadline:
            # The worker takes small batches: it steps aside for requests, and its leases must not run out.
            batch = min(20 if trigger == "worker" else self.config.batch_size, remaining)
            rows = self._claim(owner, batch, started)
            if not rows:
                break
            self._pass.cache = {}  # per batch: a switch-off is seen within one batch
            remaining -= len(rows)
            report.claimed += len(rows)
            for index, row in enumerate(rows):
                if time.monotonic() >= deadline:
                    self._release([r.id for r in rows[index:]], owner)
                    break
                if trigger == "worker":
                    self._yield_to_requests()
                self._process_row(row, owner, report)

    def _yield_to_requests(self, quiet: float = 0.005, longest: float = 0.5) -> None:
        """Let acknowledgements go first while events keep arriving in this process: Bitrix24 calls slow
        handlers less often, and the work can wait a moment (bounded, so it never starves)."""
        start = time.monotonic()
        while time.monotonic() - self._last_request < quiet and time.monotonic() - start < longest:
            time.sleep(quiet)

    def backlog(self, portal_id: int | None = None) -> int:
        """Inbox rows not processed yet."""
        query = sa.select(sa.func.count()).select_from(bot_inbox).where(bot_inbox.c.status == "pending")
        if portal_id is not None:
            query = query.where(bot_inbox.c.portal_id == portal_id)
        with self.db.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def _claim(self, owner: str, limit: int, due_by: float | None = None) -> list:
        t = time.time()
        due_by = t if due_by is None else due_by
        until = t + self.config.lease_seconds
        free = sa.or_(bot_inbox.c.lease_until.is_(None), bot_inbox.c.lease_until < t)
        with self.db.write() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    sa.select(bot_inbox.c.id)
                    .where(bot_inbox.c.status == "pending", bot_inbox.c.next_attempt_at <= due_by, free)
                    .order_by(bot_inbox.c.id)
                    .limit(limit)
                )
            ]
            if not ids:
                return []
            # The same conditions again in the UPDATE: of two claimers only one can win each row.
            conn.execute(
                sa.update(bot_inbox)
                .where(bot_inbox.c.id.in_(ids), bot_inbox.c.status == "pending", free)
                .values(lease_owner=owner, lease_until=until, attempts=bot_inbox.c.attempts + 1)
            )
            return conn.execute(
                sa.select(bot_inbox)
                .where(bot_inbox.c.id.in_(ids), bot_inbox.c.lease_owner == owner, bot_inbox.c.lease_until == until)
                .order_by(bot_inbox.c.id)
            ).all()

    def _release(self, ids: list[int], owner: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                sa.update(bot_inbox)
                .where(bot_inbox.c.id.in_(ids), bot_inbox.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None, attempts=bot_inbox.c.attempts - 1)
            )

    def _finish_row(
        self, row, owner: str, *, status: str, error: str | None = None, retry_in: float | None = None
    ) -> None:
        values = {"lease_owner": None, "lease_until": None, "last_error": error}
        if retry_in is not None:
            values["next_attempt_at"] = time.time() + retry_in
        else:
            values.update(status=status, processed_at=time.time())
        with self.db.write() as conn:
            conn.execute(
                sa.update(bot_inbox).where(bot_inbox.c.id == row.id, bot_inbox.c.lease_owner == owner).values(**values)
            )

    def _process_row(self, row, owner: str, report: ProcessReport) -> None:
        portal = self._cached(("portal", row.portal_id), lambda: self.portals.get(row.portal_id))
        try:
            stored = json.loads(row.payload)
        except ValueError:
            stored = {}
        try:
            if portal is None or not portal.installed:
                outcome = "portal_gone"
            else:
                outcome = self._handle(portal, row.event, stored, owner)
        except Transient as exc:
            report.errors[exc.code] = report.errors.get(exc.code, 0) + 1
            if row.attempts >= self.config.max_attempts:
                report.failed += 1
                self._finish_row(row, owner, status="failed", error=exc.code[:64])
                log.warning(
                    "bot event %s of portal %s gave up after %s attempts: %s",
                    row.id,
                    row.portal_id,
                    row.attempts,
                    exc.code,
                )
            else:
                report.retried += 1
                delay = min(3600.0, self.config.backoff_seconds * (2 ** (row.attempts - 1)))
                jitter = random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
                self._finish_row(row, owner, status="pending", error=exc.code[:64], retry_in=delay * jitter)
            return
        except sa.exc.OperationalError as exc:
            # The database was busy or went away for a moment: like a portal outage, retry later.
            log.warning(
                "bot event %s of portal %s hit a database error: %s", row.id, row.portal_id, type(exc.orig).__name__
            )
            report.retried += 1
            self._finish_row(row, owner, status="pending", error="database_error", retry_in=self.config.backoff_seconds)
            return
        except Exception:
            log.exception("bot event %s of portal %s failed", row.id, row.portal_id)
            report.failed += 1
            self._finish_row(row, owner, status="failed", error="internal_error")
            return
        if outcome == "handed_off":
            report.handed_off += 1
        if outcome == "history":
            report.history_fetched += 1
        report.done += 1
        self._finish_row(
            row,
            owner,
            status="done",
            error=None if outcome in ("handed_off", "history", "recorded", "ignored", "replied") else outcome,
        )

    # ---- what an event means -----------------------------------------------------------------------

    def _handle(self, portal, event: str, stored: dict, owner: str) -> str:
        if event == ev.BOT_DELETE:
            bot_id = ev.find_value(stored.get("data"), "BOT_ID")
            with self.db.write() as conn:
                if bot_id.isdigit():
                    conn.execute(
                        sa.update(portals)
                        .where(portals.c.id == portal.id, portals.c.bot_id == int(bot_id))
                        .values(bot_id=None)
                    )
            return "ignored"
        if event == ev.SESSION_FINISH:
            chat_id, session = ev.session_finish_ids(stored)
            if chat_id is None:
                return "no_chat"
            return "history" if self.fetch_history(portal, chat_id, session) else "ignored"
        chat = ev.chat_event(stored)
        if chat.is_lines:
            if chat.chat_id is None:
                return "no_chat"
            settings = self._cached(("settings", portal.id), lambda: self.settings_row(portal.id))
            record = (lambda conn: self._record(conn, portal, chat)) if settings["enabled"] else None
            return self._hand_off(portal, chat, settings, owner, record)
        if chat.is_private and event == ev.MESSAGE:
            return self._private_reply(portal, chat, owner)
        return "ignored"

    def _record(self, conn, portal, chat: ev.ChatEvent) -> None:
        ts = chat.ts or now()
        conn.execute(
            _insert(conn)(dialogs)
            .values(
                portal_id=portal.id,
                chat_id=chat.chat_id,
                dialog_id=chat.dialog_id[:64],
                line_id=chat.line_id,
                connector=chat.connector,
                entity_id=chat.entity_id or None,
                client_id=chat.client_id or None,
                client_name=chat.client_name or None,
                crm_bindings=json.dumps(chat.crm_bindings) if chat.crm_bindings else None,
                language=chat.language[:8] or None,
                status="new",
                created_at=ts,
                updated_at=now(),
            )
            .on_conflict_do_nothing(index_elements=["portal_id", "chat_id"])
        )
        row = conn.execute(
            sa.select(dialogs).where(dialogs.c.portal_id == portal.id, dialogs.c.chat_id == chat.chat_id)
        ).first()
        # A later event may know what the first did not (the join carries no CRM bindings).
        fill = {
            name: value
            for name, value in (
                ("line_id", chat.line_id),
                ("connector", chat.connector),
                ("client_name", chat.client_name or None),
                ("client_id", chat.client_id or None),
                ("crm_bindings", json.dumps(chat.crm_bindings) if chat.crm_bindings else None),
            )
            if value and not getattr(row, name)
        }
        if chat.event == ev.MESSAGE and (chat.text or chat.message_id):
            inserted = conn.execute(
                _insert(conn)(dialog_messages)
                .values(
                    dialog_pk=row.id,
                    message_id=(chat.message_id or f"ev{ts}")[:32],
                    author_kind="client",
                    author_id=chat.author_id or chat.client_id or None,
                    text=chat.text,
                    sent_at=ts,
                    source="bot",
                )
                .on_conflict_do_nothing(index_elements=["dialog_pk", "message_id"])
            ).rowcount
            if inserted:
                fill["last_message_at"] = max(ts, row.last_message_at or 0)
                if not row.first_message:
                    fill["first_message"] = chat.text
        if fill:
            fill["updated_at"] = now()
            conn.execute(sa.update(dialogs).where(dialogs.c.id == row.id).values(**fill))

    # ---- acting once per chat ---------------------------------------------------------------------

    def _claim_action(self, portal_id: int, chat_key: str, kind: str, owner: str, record=None):
        """Create the chat's action row if needed and claim it; None when done or held by a peer.

        `record(conn)` (storing the dialog) runs first in the same transaction, done or not.
        """
        t = time.time()
        free = sa.or_(bot_handoffs.c.lease_until.is_(None), bot_handoffs.c.lease_until < t)
        with self.db.write() as conn:
            if record is not None:
                record(conn)
            conn.execute(
                _insert(conn)(bot_handoffs)
                .values(
                    portal_id=portal_id,
                    chat_key=chat_key,
                    kind=kind,
                    state="pending",
                    created_at=now(),
                )
                .on_conflict_do_nothing(index_elements=["portal_id", "chat_key"])
            )
            won = conn.execute(
                sa.update(bot_handoffs)
                .where(
                    bot_handoffs.c.portal_id == portal_id,
                    bot_handoffs.c.chat_key == chat_key,
                    bot_handoffs.c.state == "pending",
                    free,
                )
                .values(
                    lease_owner=owner, lease_until=t + self.config.lease_seconds, attempts=bot_handoffs.c.attempts + 1
                )
            ).rowcount
            if won != 1:
                return None
            return conn.execute(
                sa.select(bot_handoffs).where(
                    bot_handoffs.c.portal_id == portal_id, bot_handoffs.c.chat_key == chat_key
                )
            ).first()

    def _settle_action(self, action_id: int, owner: str, dialog: dict | None = None, **values) -> None:
        """Release the action's lease with its outcome; `dialog` = the dialog's new status, same transaction."""
        with self.db.write() as conn:
            conn.execute(
                sa.update(bot_handoffs)
                .where(bot_handoffs.c.id == action_id, bot_handoffs.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None, **values)
            )
            if dialog is not None:
                conn.execute(
                    sa.update(dialogs)
                    .where(dialogs.c.portal_id == dialog.pop("portal_id"), dialogs.c.chat_id == dialog.pop("chat_id"))
                    .values(transferred_at=now(), updated_at=now(), **dialog)
                )

    def _call(self, portal, method: str, params: dict):
        """One REST call with the portal's credential; transient failures become Transient."""
        try:
            client = self._cached(("client", portal.id), lambda: self.portals.client(portal))
            return client.call(method, params).result
        except Bitrix24Error as exc:
            if is_transient(exc):
                raise Transient(exc.code) from None
            raise

    def _hand_off(self, portal, chat: ev.ChatEvent, settings: dict, owner: str, record=None) -> str:
        action = self._claim_action(portal.id, f"chat{chat.chat_id}", "handoff", owner, record)
        if action is None:
            return "recorded"
        line = (
            self._cached(("line", portal.id, chat.line_id), lambda: self.line_row(portal.id, chat.line_id))
            if chat.line_id
            else None
        )
        zone = timezone(settings["timezone"], self.config.timezone)
        in_hours = is_open(line["schedule"] if line else None, zone, time.time())
        try:
            if not action.notice_sent:
                text = (
                    settings["greeting"]
                    if in_hours
                    else ((line or {}).get("out_of_hours_text") or self._text("out_of_hours", chat.language))
                )
                if text:
                    try:
                        self._call(
                            portal,
                            "imbot.message.add",
                            {"BOT_ID": chat.bot_id or portal.bot_id, "DIALOG_ID": chat.dialog_id, "MESSAGE": text},
                        )
                    except Bitrix24Error as exc:
                        # The client must not wait for an operator because a greeting was refused.
                        log.warning(
                            "portal %s refused the bot's notice in chat %s: %s",
                            portal.member_id,
                            chat.chat_id,
                            exc.code,
                        )
                self._settle_notice(action.id, owner)
            finish = not in_hours and line is not None and line["out_of_hours_action"] == "finish"
            if finish:
                method, params = "imopenlines.bot.session.finish", {"CHAT_ID": chat.chat_id}
            elif settings["transfer_mode"] == "queue" and settings["queue_id"]:
                method, params = (
                    "imopenlines.bot.session.transfer",
                    {"CHAT_ID": chat.chat_id, "QUEUE_ID": settings["queue_id"], "LEAVE": "Y"},
                )
            else:
                method, params = "imopenlines.bot.session.operator", {"CHAT_ID": chat.chat_id}
            try:
                self._call(portal, method, params)
                outcome = "finished" if finish else "transferred"
            except Bitrix24Error as exc:
                if exc.code not in ALREADY_WITH_OPERATOR:
                    self._settle_action(
                        action.id,
                        owner,
                        state="failed",
                        method=method,
                        outcome=exc.code[:64],
                        done_at=now(),
                        dialog=_outcome(portal.id, chat.chat_id, "transfer_failed", exc.code[:64], not in_hours),
                    )
                    log.warning(
                        "portal %s refused the hand-off of chat %s: %s", portal.member_id, chat.chat_id, exc.code
                    )
                    return exc.code[:64]
                outcome = "already_with_operator"
        except Transient:
            self._settle_action(action.id, owner)
            raise
        self._settle_action(
            action.id,
            owner,
            state="done",
            method=method,
            outcome=outcome,
            done_at=now(),
            dialog=_outcome(portal.id, chat.chat_id, "finished" if finish else "transferred", outcome, not in_hours),
        )
        return "handed_off"

    def _settle_notice(self, action_id: int, owner: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                sa.update(bot_handoffs)
                .where(bot_handoffs.c.id == action_id, bot_handoffs.c.lease_owner == owner)
                .values(notice_sent=True)
            )

    def _private_reply(self, portal, chat: ev.ChatEvent, owner: str) -> str:
        if not chat.dialog_id:
            return "no_chat"
        action = self._claim_action(portal.id, f"user{chat.dialog_id}"[:64], "private_reply", owner)
        if action is None:
            return "ignored"
        try:
            self._call(
                portal,
                "imbot.message.add",
                {
                    "BOT_ID": chat.bot_id or portal.bot_id,
                    "DIALOG_ID": chat.dialog_id,
                    "MESSAGE": self._text("private_reply", chat.language),
                },
            )
        except Transient:
            self._settle_action(action.id, owner)
            raise
        except Bitrix24Error as exc:
            self._settle_action(
                action.id, owner, state="failed", method="imbot.message.add", outcome=exc.code[:64], done_at=now()
            )
            return exc.code[:64]
        self._settle_action(action.id, owner, state="done", method="imbot.message.add", outcome="sent", done_at=now())
        return "replied"

    def _text(self, name: str, language: str) -> str:
        texts = self.texts.get(name, {})
        lang = "ru" if (language or "").lower().startswith("ru") else "en"
        return texts.get(lang) or texts.get("en") or ""

    # ---- the whole conversation ---------------------------------------------------------------------

    def fetch_history(self, portal, chat_id: int, session_id: str | None) -> bool:
        """Store every message of the chat's finished session once; False when the dialog is not stored."""
        with self.db.read() as conn:
            dialog = conn.execute(
                sa.select(dialogs).where(dialogs.c.portal_id == portal.id, dialogs.c.chat_id == chat_id)
            ).first()
        if dialog is None:
            return False
        params = {"CHAT_ID": chat_id}
        if session_id or dialog.session_id:
            params["SESSION_ID"] = session_id or dialog.session_id
        try:
            result = self._call(portal, "imopenlines.session.history.get", params)
        except Transient:
            raise
        except Bitrix24Error as exc:
            log.warning("portal %s refused the history of chat %s: %s", portal.member_id, chat_id, exc.code)
            return False
        bot_id = str(portal.bot_id or "")
        messages = parse_history(result, client_id=dialog.client_id or "", bot_id=bot_id, default_ts=now())
        ts = now()
        with self.db.write() as conn:
            for message in messages:
                conn.execute(
                    _insert(conn)(dialog_messages)
                    .values(
                        dialog_pk=dialog.id,
                        message_id=message.message_id,
                        author_kind=message.author_kind,
                        author_id=message.author_id,
                        text=message.text,
                        sent_at=message.sent_at,
                        source="history",
                    )
                    .on_conflict_do_nothing(index_elements=["dialog_pk", "message_id"])
                )
            values = {
                "status": "finished",
                "finished_at": dialog.finished_at or ts,
                "history_fetched_at": ts,
                "updated_at": ts,
            }
            if session_id:
                values["session_id"] = session_id[:32]
            if messages:
                values["last_message_at"] = max(m.sent_at for m in messages)
            first_client = next((m.text for m in messages if m.author_kind == "client" and m.text), None)
            if not dialog.first_message and first_client:
                # Handed over on the join, the bot may never have seen the client's first words.
                values["first_message"] = first_client
            conn.execute(sa.update(dialogs).where(dialogs.c.id == dialog.id).values(**values))
        return True

    def sweep_finished_sessions(self, report: ProcessReport, deadline: float, limit: int = 50) -> None:
        """Dialogs handed over a while ago with no history yet: ask the portal whether their session ended.

        For portals that do not deliver OnSessionFinish to the app; `imopenlines.dialog.get` tells the
        session id and whether it is closed (field names vary, so several are read).
        """
        cutoff = now() - self.config.history_check_seconds
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(dialogs.c.portal_id, dialogs.c.chat_id)
                .where(
                    dialogs.c.status == "transferred",
                    dialogs.c.history_fetched_at.is_(None),
                    dialogs.c.transferred_at <= cutoff,
                )
                .order_by(dialogs.c.transferred_at)
                .limit(limit)
            ).all()
        for row in rows:
            if time.monotonic() >= deadline:
                return
            portal = self.portals.get(row.portal_id)
            if portal is None or not portal.installed:
                continue
            try:
                info = self._call(portal, "imopenlines.dialog.get", {"CHAT_ID": row.chat_id})
                if not session_closed(info):
                    continue
                if self.fetch_history(portal, row.chat_id, session_of(info)):
                    report.history_fetched += 1
            except (Transient, Bitrix24Error) as exc:
                code = getattr(exc, "code", "error")
                report.errors[code] = report.errors.get(code, 0) + 1

    # ---- lines on the portal -------------------------------------------------------------------------

    def portal_lines(self, portal) -> list[dict]:
        """The portal's Open Lines (imopenlines.config.list.get) with the bot's state on each."""
        try:
            result = self._call(portal, "imopenlines.config.list.get", {})
        except Transient as exc:
            raise ServiceError("portal_unavailable", status=503, upstream=exc.code) from None
        except Bitrix24Error as exc:
            raise ServiceError("portal_refused", status=502, upstream=exc.code) from None
        local = {r["line_id"]: r for r in self.lines(portal.id)}
        out = []
        for item in result if isinstance(result, list) else []:
            if not isinstance(item, dict):
                continue
            line_id = str(item.get("ID") or item.get("id") or "")
            welcome = str(item.get("WELCOME_BOT_ID") or "")
            out.append(
                {
                    "line_id": line_id,
                    "name": str(item.get("LINE_NAME") or item.get("NAME") or "")[:255],
                    "active": str(item.get("ACTIVE") or "Y") == "Y",
                    "bot_attached": str(item.get("WELCOME_BOT_ENABLE") or "N") == "Y"
                    and bool(portal.bot_id)
                    and welcome == str(portal.bot_id),
                    "settings": {k: local[line_id][k] for k in ("out_of_hours_text", "out_of_hours_action")}
                    if line_id in local
                    else None,
                }
            )
        return out

    def _audit(self, actor: str, action: str, portal_id: int, detail: dict | None = None) -> None:
        if self.audit is not None:
            portal = self.portals.get(portal_id)
            self.audit.record(actor, action, portal.member_id if portal else str(portal_id), detail)

    def attach(self, portal, line_id: str, actor: str = "system") -> dict:
        """Make the bot the line's welcome bot (first contact, then the queue)."""
        if not portal.bot_id:
            raise ServiceError("bot_not_registered", status=409)
        try:
            self._call(
                portal,
                "imopenlines.config.update",
                {
                    "CONFIG_ID": line_id,
                    "PARAMS": {
                        "WELCOME_BOT_ENABLE": "Y",
                        "WELCOME_BOT_ID": portal.bot_id,
                        "WELCOME_BOT_JOIN": "first",
                        "WELCOME_BOT_LEFT": "queue",
                    },
                },
            )
        except Transient as exc:
            raise ServiceError("portal_unavailable", status=503, upstream=exc.code) from None
        except Bitrix24Error as exc:
            if exc.code == "CONFIG_NOT_FOUND":
                # The caller named a line the portal does not have: their mistake, not the portal's failure.
                raise ServiceError("line_not_found", status=404, line_id=line_id) from None
            raise ServiceError("portal_refused", status=502, upstream=exc.code) from None
        with self.db.write() as conn:
            self._upsert_line(conn, portal.id, line_id, attached_at=now())
        self._audit(actor, "bot_attached", portal.id, {"line_id": line_id})
        return {"line_id": line_id, "bot_id": portal.bot_id, "attached": True}

    def users(self, portal) -> list[dict]:
        """The portal's active employees (user.get, paged)."""
        try:
            client = self.portals.client(portal)
            rows = client.list_all("user.get", {"FILTER": {"ACTIVE": True}}, max_items=5000)
        except Bitrix24Error as exc:
            if is_transient(exc):
                raise ServiceError("portal_unavailable", status=503, upstream=exc.code) from None
            raise ServiceError("portal_refused", status=502, upstream=exc.code) from None
        return [
            {
                "id": str(u.get("ID") or ""),
                "name": str(u.get("NAME") or ""),
                "last_name": str(u.get("LAST_NAME") or ""),
                "position": str(u.get("WORK_POSITION") or ""),
            }
            for u in rows
            if isinstance(u, dict)
        ]

    def reinit_schema(self, actor: str = "system") -> dict:
        """Apply pending migrations (idempotent, never drops) and report tables the schema lacks."""
        from database import metadata

        self.db.upgrade()
        present = set(sa.inspect(self.db.engine).get_table_names())
        missing = sorted(t for t in metadata.tables if t not in present)
        if self.audit is not None:
            self.audit.record(actor, "schema_checked", "database", {"missing": missing})
        return {"ok": not missing, "tables": sorted(metadata.tables), "missing": missing}

    @staticmethod
    def delete_data(conn, portal_id: int) -> dict[str, int]:
        """Delete the bot's rows of a portal inside the caller's transaction (purge; uninstall with CLEAN=1)."""
        counts = {}
        dialog_ids = sa.select(dialogs.c.id).where(dialogs.c.portal_id == portal_id).scalar_subquery()
        counts["dialog_messages"] = conn.execute(
            sa.delete(dialog_messages).where(dialog_messages.c.dialog_pk.in_(dialog_ids))
        ).rowcount
        for table in (dialogs, bot_handoffs, bot_inbox, bot_lines, bot_settings):
            counts[table.name] = conn.execute(sa.delete(table).where(table.c.portal_id == portal_id)).rowcount
        return counts

    def prune_inbox(self) -> int:
        """Forget processed inbox rows older than BOT_INBOX_KEEP_DAYS (their keys only catch late duplicates)."""
        cutoff = time.time() - self.config.inbox_keep_days * 86400
        with self.db.write() as conn:
            return conn.execute(
                sa.delete(bot_inbox).where(
                    bot_inbox.c.status.in_(("done", "failed")), bot_inbox.c.processed_at < cutoff
                )
            ).rowcount

    def purge_portal(self, portal, actor: str = "system") -> dict:
        """Unregister the bot where a token still works, then delete the portal and every row it owns."""
        unregistered = False
        if portal.bot_id:
            try:
                self.portals.client(portal).call("imbot.unregister", {"BOT_ID": portal.bot_id})
                unregistered = True
            except Bitrix24Error as exc:
                log.info("bot of portal %s not unregistered: %s", portal.member_id, exc.code)
        with self.db.write() as conn:
            counts = self.delete_data(conn, portal.id)
            self.portals.vault.revoke_portal(portal.id, delete=True, conn=conn)
            # Other areas' rows (conferences, …) go with the portal row through their ON DELETE CASCADE.
            counts["portals"] = conn.execute(sa.delete(portals).where(portals.c.id == portal.id)).rowcount
            result = {"unregistered": unregistered, "deleted": counts}
            if self.audit is not None:
                self.audit.record(actor, "portal_purged", portal.member_id, result, conn=conn)
        return result


def _outcome(portal_id: int, chat_id: int, status: str, outcome: str, out_of_hours: bool) -> dict:
    return {
        "portal_id": portal_id,
        "chat_id": chat_id,
        "status": status,
        "transfer_outcome": outcome,
        "out_of_hours": out_of_hours,
    }


def session_closed(info) -> bool:
    """Whether an imopenlines.dialog.get answer says the session is over (several spellings are seen)."""
    if not isinstance(info, dict):
        return False
    for key in ("session_closed", "closed", "SESSION_CLOSED", "CLOSED"):
        if str(info.get(key, "")).upper() in ("Y", "TRUE", "1"):
            return True
    session = info.get("session") if isinstance(info.get("session"), dict) else {}
    status = info.get("session_status") or session.get("status") or info.get("status")
    return str(status or "").lower() in ("closed", "finished", "finish")


def session_of(info) -> str | None:
    """The session id in an imopenlines.dialog.get answer: `session_id`, else the 6th field of
    `entity_data_1` (`Y|LEAD|<lead>|N|N|<session id>|…`)."""
    if not isinstance(info, dict):
        return None
    direct = str(info.get("session_id") or info.get("SESSION_ID") or "")
    if direct.isdigit():
        return direct
    parts = str(info.get("entity_data_1") or "").split("|")
    return parts[5] if len(parts) > 5 and parts[5].isdigit() else None


class InboxWorker:
    """One background thread per process: woken after an event is committed, processes what is due."""

    def __init__(self, service: OpenLinesService):
        self.service = service
        self.pid = os.getpid()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="bot-inbox", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def alive(self) -> bool:
        """False after a fork (threads do not survive it) or a crash."""
        return self.pid == os.getpid() and self._thread.is_alive()

    def wake(self) -> None:
        """Ask for a pass."""
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no pass is pending or running."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                while True:
                    report = self.service.process_ready(trigger="worker")
                    if not report.done and not report.failed:
                        break  # nothing new, or only retries: those wait for their backoff and cron
            except Exception:
                log.exception("bot inbox worker pass failed")
            if not self._wake.is_set():
                self._idle.set()
