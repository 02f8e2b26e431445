"""The refresh engine: the one code path that spends refresh tokens.

Used by the cron run (`POST /tasks/refresh`, `flask tokens refresh`), by the token endpoint and by
request-time refresh when a REST call answers `expired_token`. Rules (DESIGN.md, token keeper):
- one refresh at a time per credential across processes and hosts: a lease claimed by a conditional
  UPDATE; after winning, the row is read again (a peer may have refreshed already);
- no transaction is held across HTTP; the new pair is committed by compare-and-swap on the version
  before anything uses it;
- transient failures retry with backoff and jitter, bounded, keeping the old pair; a lost response
  (rotated by the provider, answer never seen) shows up as invalid_grant on an unchanged row and is
  flagged, never looped; permanent failures count up to needs_reauth, and the right person is told;
- each worker decrypts its own row: one that no key decrypts is quarantined (`broken`), its lease
  given back, and the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import sqlalchemy as sa

from database import record_task_run, task_runs
from models.metrics import Metrics
from models.oauth import OAuthError, Provider
from models.vault import ACTIVE, BROKEN, NEEDS_REAUTH, UNDECRYPTABLE, Credential, Undecryptable, Vault

log = logging.getLogger(__name__)

REFRESHED = "refreshed"
FRESH = "fresh"  # nothing to do: not due, or a peer refreshed it meanwhile
LOCKED = "locked"
FAILED = "failed"
REAUTH = "needs_reauth"
INACTIVE = "inactive"
LOST_RESPONSE = "lost_response"
# Counted as failed in a run's report, with errors {"undecryptable": n}.
BROKEN_RESULT = BROKEN


@dataclass(frozen=True)
class RefreshSettings:
    """Tuning of the engine (from config)."""

    ahead_seconds: int = 600
    recent_use_seconds: int = 7 * 24 * 3600
    renew_before_seconds: int = 30 * 24 * 3600
    concurrency: int = 16
    batch_size: int = 500
    budget_seconds: float = 240.0
    max_attempts: int = 3
    backoff_seconds: float = 0.5
    lease_seconds: float = 120.0
    failures_before_reauth: int = 2
    peer_wait_seconds: float = 20.0

    @classmethod
    def from_config(cls, cfg) -> RefreshSettings:
        """Build from the Flask config mapping."""
        return cls(
            ahead_seconds=int(cfg["REFRESH_AHEAD_SECONDS"]),
            recent_use_seconds=int(cfg["REFRESH_RECENT_USE_SECONDS"]),
            renew_before_seconds=int(cfg["REFRESH_TOKEN_RENEW_DAYS"]) * 24 * 3600,
            concurrency=int(cfg["REFRESH_CONCURRENCY"]),
            batch_size=int(cfg["REFRESH_BATCH_SIZE"]),
            budget_seconds=float(cfg["REFRESH_BUDGET_SECONDS"]),
            max_attempts=int(cfg["REFRESH_MAX_ATTEMPTS"]),
            backoff_seconds=float(cfg["REFRESH_BACKOFF_SECONDS"]),
            lease_seconds=float(cfg["REFRESH_LEASE_SECONDS"]),
            failures_before_reauth=int(cfg["REFRESH_FAILURES_BEFORE_REAUTH"]),
        )


@dataclass
class RefreshOutcome:
    """What happened to one credential."""

    credential_id: int
    result: str
    error: str | None = None
    credential: Credential | None = None


@dataclass
class RunReport:
    """The JSON report of one run."""

    run_id: str
    due: int = 0
    refreshed: int = 0
    failed: int = 0
    needs_reauth: int = 0
    skipped_locked: int = 0
    fresh: int = 0
    left: int = 0
    duration_ms: int = 0
    budget_exhausted: bool = False
    errors: dict = field(default_factory=dict)

    def add(self, outcome: RefreshOutcome) -> None:
        """Count an outcome."""
        if outcome.result == REFRESHED:
            self.refreshed += 1
        elif outcome.result == LOCKED:
            self.skipped_locked += 1
        elif outcome.result in (FRESH, INACTIVE):
            self.fresh += 1
        else:
            self.failed += 1
            if outcome.result == REAUTH:
                self.needs_reauth += 1
            if outcome.error:
                self.errors[outcome.error] = self.errors.get(outcome.error, 0) + 1

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return dict(self.__dict__)


Notifier = Callable[[Credential, str], None]


class RefreshEngine:
    """Refreshes credentials safely; see the module docstring for the rules."""

    def __init__(
        self,
        vault: Vault,
        providers: dict[str, Provider],
        settings: RefreshSettings,
        *,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.vault = vault
        self.providers = providers
        self.settings = settings
        self.metrics = metrics
        self.notifier = notifier
        self._sleep = sleep
        self._owner_prefix = f"{socket.gethostname()[:40]}:{os.getpid()}"
        # The other half of needs_reauth: a fresh pair from outside (install, iframe open, re-connect).
        vault.on_restored = self.restored

    # ---- one credential ------------------------------------------------------------------------

    def _owner(self) -> str:
        return f"{self._owner_prefix}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"

    def is_due(self, cred: Credential, now: float | None = None) -> bool:
        """The same rule as Vault.due_page, for one credential already in memory."""
        t = time.time() if now is None else now
        s = self.settings
        access_due = cred.expires_at <= t + s.ahead_seconds and (cred.last_used_at or 0) >= t - s.recent_use_seconds
        refresh_due = cred.refresh_expires_at is not None and cred.refresh_expires_at <= t + s.renew_before_seconds
        return bool(cred.refresh_token) and (access_due or refresh_due)

    def refresh(
        self,
        credential_id: int,
        *,
        force: bool = False,
        seen_version: int | None = None,
        deadline: float | None = None,
        wait_for_peer: bool = False,
    ) -> RefreshOutcome:
        """Refresh one credential if it is due (or `force`), under its lease (request-time path).

        `seen_version`: the version whose access token was refused; if the row has moved past it,
        a peer already refreshed and nothing is spent.
        """
        # Look without writing first: most of the time there is nothing to do.
        cred = self.vault.get(credential_id)
        if cred is not None and cred.status == BROKEN:
            return RefreshOutcome(credential_id, BROKEN_RESULT, error=UNDECRYPTABLE, credential=cred)
        if cred is None or cred.status != ACTIVE:
            status = REAUTH if cred is not None and cred.status == NEEDS_REAUTH else INACTIVE
            return RefreshOutcome(credential_id, status, credential=cred)
        if self._already_fresh(cred, force, seen_version):
            return RefreshOutcome(credential_id, FRESH, credential=cred)
        owner = self._owner()
        # Winning the lease returns the row as it is now: a peer may have refreshed it meanwhile.
        claimed = self.vault.claim(credential_id, owner, self.settings.lease_seconds)
        if claimed is None:
            if wait_for_peer:
                return self._wait_for_peer(cred, deadline)
            return RefreshOutcome(credential_id, LOCKED, credential=cred)
        if claimed.status == BROKEN:  # quarantined by claim(), lease given back
            return RefreshOutcome(credential_id, BROKEN_RESULT, error=UNDECRYPTABLE, credential=claimed)
        settled = False
        try:
            if self._already_fresh(claimed, force, seen_version):
                return RefreshOutcome(credential_id, FRESH, credential=claimed)
            outcome = self._attempt(claimed, owner, deadline)
            settled = True  # _attempt always settles the lease (commit or record_failure)
            return outcome
        finally:
            if not settled:
                self.vault.release_lease(credential_id, owner)

    def _refresh_claimed(
        self, row, owner: str, deadline: float, committer: GroupCommitter, http_slots: threading.Semaphore
    ) -> RefreshOutcome:
        """A run's worker: the lease is already ours (claimed with its chunk); the row is still encrypted."""
        settled = False
        try:
            try:
                cred = self.vault.open(row)
            except Undecryptable:
                settled = self.vault.quarantine(row.id, row.version, owner)
                return RefreshOutcome(row.id, BROKEN_RESULT, error=UNDECRYPTABLE)
            if not self.is_due(cred):  # a peer refreshed it between the due query and our claim
                return RefreshOutcome(cred.id, FRESH)
            outcome = self._attempt(cred, owner, deadline, reread=False, committer=committer, http_slots=http_slots)
            settled = True
            return outcome
        finally:
            if not settled:
                self.vault.release_lease(row.id, owner)

    def _already_fresh(self, cred: Credential, force: bool, seen_version: int | None) -> bool:
        if force:
            return seen_version is not None and cred.version != seen_version
        return not self.is_due(cred)

    def _attempt(
        self,
        cred: Credential,
        owner: str,
        deadline: float | None,
        reread: bool = True,
        committer: GroupCommitter | None = None,
        http_slots: threading.Semaphore | None = None,
    ) -> RefreshOutcome:
        provider = self.providers.get(cred.provider)
        if provider is None:
            self.vault.release_lease(cred.id, owner)
            return RefreshOutcome(cred.id, FAILED, error="unknown_provider")
        unconfirmed = cred.unconfirmed_attempt
        error: OAuthError | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                with http_slots or contextlib.nullcontext():
                    # Durably note the request before it goes out (renewing the lease for a full term):
                    # a peer that takes the lease over after we die must treat the pair as maybe rotated.
                    if committer is not None:
                        started = committer.start(cred.id, owner, self.settings.lease_seconds)
                    else:
                        started = self.vault.start_attempt(cred.id, owner, self.settings.lease_seconds)
                    if started is None:
                        log.warning("lease on credential %s lapsed before the request; left to its new holder", cred.id)
                        return RefreshOutcome(cred.id, LOCKED)
                    self._count("refresh_attempts_total", provider=cred.provider)
                    tokens = provider.refresh(cred)
            except OAuthError as exc:
                error = exc
                if not exc.permanent:
                    unconfirmed = unconfirmed or exc.unconfirmed
                    self._count("refresh_failures_total", provider=cred.provider, error_class="transient")
                    delay = self._backoff(attempt)
                    if attempt < self.settings.max_attempts and self._time_left(deadline) > delay:
                        self._sleep(delay)
                        continue
                break
            if self._store(cred, tokens, committer):
                self._count("refresh_success_total", provider=cred.provider)
                return RefreshOutcome(cred.id, REFRESHED, credential=self.vault.get(cred.id) if reread else None)
            # The row moved while we talked to the provider (a fresh pair arrived from an install or
            # an iframe open). That pair is newer than ours; ours is dropped.
            log.warning("credential %s changed during refresh; kept the newer stored pair", cred.id)
            self.vault.release_lease(cred.id, owner)
            return RefreshOutcome(cred.id, FRESH, credential=self.vault.get(cred.id))
        return self._fail(cred, owner, error, unconfirmed)

    def _store(self, cred: Credential, tokens, committer: GroupCommitter | None) -> bool:
        """Commit a pair the provider has already issued; a database hiccup must not lose it.

        Retries the write a few times (it is the database failing, not the provider). If it still
        fails, the row is marked unconfirmed so the next invalid_grant is read as a lost response.
        """
        last_exc: Exception | None = None
        for attempt in range(3):
            try:
                if committer is not None and attempt == 0:
                    return committer.commit(cred.id, cred.version, tokens)
                return self.vault.commit_refresh(cred.id, cred.version, tokens)
            except sa.exc.SQLAlchemyError as exc:
                last_exc = exc
                self._sleep(0.2 * (attempt + 1))
        log.error("credential %s: the provider issued a new pair but it could not be stored", cred.id)
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.vault.mark_unconfirmed(cred.id, cred.version)
        assert last_exc is not None
        raise last_exc

    def _fail(self, cred: Credential, owner: str, error: OAuthError | None, unconfirmed: bool) -> RefreshOutcome:
        assert error is not None
        code = error.code
        lost = error.permanent and code == "invalid_grant" and unconfirmed
        if lost:
            # The provider rotated the pair on an earlier attempt whose answer never reached us: the
            # stored refresh token is spent and no retry can bring the new one back.
            code = LOST_RESPONSE
        if error.permanent:
            self._count(
                "refresh_failures_total", provider=cred.provider, error_class=LOST_RESPONSE if lost else "permanent"
            )
        status = self.vault.record_failure(
            cred.id,
            owner,
            cred.version,
            code,
            permanent=error.permanent,
            unconfirmed=unconfirmed and not error.permanent,
            threshold=self.settings.failures_before_reauth,
            force_reauth=lost,
        )
        if status is None:  # a peer stored a newer pair meanwhile: not our failure
            return RefreshOutcome(cred.id, FRESH, credential=self.vault.get(cred.id))
        log.warning(
            "refresh of credential %s (%s) failed: error=%s kind=%s status=%s",
            cred.id,
            cred.provider,
            code,
            error.kind,
            status,
        )
        if status == NEEDS_REAUTH:
            self._count("credentials_needs_reauth_total", provider=cred.provider)
            log.error(
                "credential %s (%s %s) needs re-authorisation after %s", cred.id, cred.provider, cred.account, code
            )
            if self.notifier is not None:
                try:
                    self.notifier(cred, code)
                except Exception:  # telling the admin must never break the run
                    log.exception("could not notify about credential %s", cred.id)
            return RefreshOutcome(cred.id, REAUTH, error=code)
        return RefreshOutcome(cred.id, FAILED, error=code)

    def restored(self, cred: Credential) -> None:
        """A credential that needed re-authorisation works again: count it and have the admin told."""
        self._count("credentials_restored_total", provider=cred.provider)
        self.flush()
        log.info("credential %s (%s %s) works again after re-authorisation", cred.id, cred.provider, cred.account)
        tell = getattr(self.notifier, "restored", None)
        if tell is not None:
            try:
                tell(cred)
            except Exception:  # the notice is a courtesy; the credential is restored either way
                log.exception("could not notify that credential %s is restored", cred.id)

    def _wait_for_peer(self, cred: Credential, deadline: float | None) -> RefreshOutcome:
        """Another process holds the lease: wait for its result instead of spending the token twice."""
        limit = time.time() + min(self.settings.peer_wait_seconds, max(0.0, self._time_left(deadline)))
        while time.time() < limit:
            owner, until = self.vault.lease_holder(cred.id)
            if owner is None or (until or 0) < time.time():
                break
            self._sleep(0.1)
        current = self.vault.get(cred.id)
        if current is not None and current.version != cred.version:
            return RefreshOutcome(cred.id, FRESH, credential=current)
        return RefreshOutcome(cred.id, LOCKED, credential=current)

    def _backoff(self, attempt: int) -> float:
        base = self.settings.backoff_seconds * (2 ** (attempt - 1))
        return min(10.0, base * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto

    @staticmethod
    def _time_left(deadline: float | None) -> float:
        return float("inf") if deadline is None else deadline - time.time()

    def _count(self, name: str, **labels: str) -> None:
        if self.metrics is not None:
            self.metrics.incr(name, **labels)

    # ---- request-time use -------------------------------------------------------------------------

    def ensure_fresh(self, credential_id: int, min_valid_seconds: int = 60) -> Credential | None:
        """Return the credential with an access token valid for a while, refreshing first if needed."""
        cred = self.vault.get(credential_id)
        if cred is None or cred.status != ACTIVE:
            return cred
        if cred.expires_at - time.time() > min_valid_seconds or not cred.refresh_token:
            return cred
        outcome = self.refresh(credential_id, force=True, seen_version=cred.version, wait_for_peer=True)
        self.flush()
        return outcome.credential or self.vault.get(credential_id)

    def after_expired_token(self, cred: Credential) -> Credential | None:
        """A REST call said expired_token for this version: refresh once (or take a peer's result)."""
        current = self.vault.get(cred.id)
        if (
            current is not None
            and current.version == cred.version
            and current.failure_count
            and current.last_error_at
            and time.time() - current.last_error_at < 10
        ):
            # A refresh of this very pair failed moments ago (often in ensure_fresh of the same call):
            # don't spend a second attempt, which would count towards re-auth again.
            return None
        outcome = self.refresh(cred.id, force=True, seen_version=cred.version, wait_for_peer=True)
        self.flush()
        current = outcome.credential or self.vault.get(cred.id)
        if current is None or current.status != ACTIVE or current.version == cred.version:
            return None
        return current

    def flush(self) -> None:
        """Write buffered metrics."""
        if self.metrics is not None:
            try:
                self.metrics.flush()
            except sa.exc.SQLAlchemyError:
                log.exception("could not write metrics")

    # ---- the cron run ------------------------------------------------------------------------------

    def run(
        self,
        *,
        provider: str | None = None,
        limit: int | None = None,
        budget_s: float | None = None,
        trigger: str = "cli",
    ) -> RunReport:
        """Refresh everything due, in batches with bounded concurrency, within a time budget."""
        started = time.time()
        budget = self.settings.budget_seconds if budget_s is None else budget_s
        deadline = started + budget
        report = RunReport(run_id=str(uuid.uuid4()))
        self._record_run_start(report.run_id, trigger, provider, started)
        due_args = self._due_args(provider)
        report.due = self.vault.count_due(now_ts=int(started), **due_args)
        submitted = 0
        after: tuple[int, int] | None = None
        max_in_flight = self.settings.concurrency * 3
        in_flight: set[Future] = set()
        lock = threading.Lock()

        def collect(done: set[Future]) -> None:
            for fut in done:
                try:
                    outcome = fut.result()
                except Exception as exc:  # one broken row must not stop the run
                    log.exception("refresh crashed")
                    outcome = RefreshOutcome(-1, FAILED, error=type(exc).__name__)
                with lock:
                    report.add(outcome)

        owner = f"{self._owner()}:run"
        # REFRESH_CONCURRENCY bounds the requests in flight to the providers. Workers waiting for
        # their batch to be committed hold no request slot, so there are more threads than slots.
        http_slots = threading.BoundedSemaphore(self.settings.concurrency)
        workers = self.settings.concurrency * 2
        # Exit order is the reverse of entry: the pool (which waits for every worker, even when the
        # loop below raises) closes before the committer, so no worker is left waiting on a commit.
        with (
            GroupCommitter(self.vault) as committer,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh") as pool,
        ):
            stop = False
            while not stop:
                page = self.vault.due_page(now_ts=int(started), after=after, limit=self.settings.batch_size, **due_args)
                if not page:
                    break
                after = page[-1]
                ids = [credential_id for _, credential_id in page]
                for offset in range(0, len(ids), self.settings.concurrency):
                    while len(in_flight) >= max_in_flight:
                        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        collect(done)
                    if (limit is not None and submitted >= limit) or time.time() >= deadline:
                        report.budget_exhausted = time.time() >= deadline
                        stop = True
                        break
                    chunk = ids[offset : offset + self.settings.concurrency]
                    if limit is not None:
                        chunk = chunk[: limit - submitted]
                    submitted += len(chunk)
                    # One statement claims the chunk's leases (instead of one transaction each).
                    claimed = self.vault.claim_many(chunk, owner, self.settings.lease_seconds)
                    report.skipped_locked += len(chunk) - len(claimed)
                    for cred in claimed:
                        in_flight.add(pool.submit(self._refresh_claimed, cred, owner, deadline, committer, http_slots))
                if len(page) < self.settings.batch_size:
                    break
            done, _ = wait(in_flight)
            collect(done)
        report.left = self.vault.count_due(now_ts=int(time.time()), **due_args)
        report.duration_ms = int((time.time() - started) * 1000)
        self._count("refresh_runs_total", trigger=trigger)
        self.flush()
        self._record_run_end(report, started)
        log.info(
            "refresh run %s: due=%s refreshed=%s failed=%s needs_reauth=%s locked=%s left=%s in %sms",
            report.run_id,
            report.due,
            report.refreshed,
            report.failed,
            report.needs_reauth,
            report.skipped_locked,
            report.left,
            report.duration_ms,
        )
        return report

    def _due_args(self, provider: str | None) -> dict:
        s = self.settings
        return {
            "ahead_seconds": s.ahead_seconds,
            "recent_use_seconds": s.recent_use_seconds,
            "renew_before_seconds": s.renew_before_seconds,
            "provider": provider,
        }

    def due_count(self, provider: str | None = None) -> int:
        """How many credentials are due now."""
        return self.vault.count_due(now_ts=int(time.time()), **self._due_args(provider))

    def _record_run_start(self, run_id: str, trigger: str, provider: str | None, started: float) -> None:
        record_task_run(self.vault.db, run_id, "refresh", trigger, started, provider=provider)

    def _record_run_end(self, report: RunReport, started: float) -> None:
        record_task_run(
            self.vault.db,
            report.run_id,
            "refresh",
            "",
            started,
            finished=time.time(),
            duration_ms=report.duration_ms,
            report=report.as_dict(),
        )


class GroupCommitter:
    """Commits refreshed pairs of a run in small batches from one thread (group commit).

    A worker hands over its new pair and waits until the batch holding it is committed, so a pair
    is durable before the worker reports it; one transaction per batch instead of one per pair keeps
    the single SQLite writer from becoming the bottleneck (bench/refresh.py). The "request is about
    to go out" marks (Vault.start_attempts) travel the same way, each worker waiting for its own.
    """

    MAX_BATCH = 256

    def __init__(self, vault: Vault):
        self.vault = vault
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="refresh-commit", daemon=True)

    def __enter__(self) -> GroupCommitter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._queue.put(None)
        self._thread.join()

    def commit(self, credential_id: int, version: int, tokens) -> bool:
        """Queue a CAS commit and wait for its batch; True when the pair was stored."""
        done: Future = Future()
        self._queue.put(("commit", (credential_id, version, tokens), done))
        return done.result()

    def start(self, credential_id: int, owner: str, ttl_seconds: float) -> float | None:
        """Queue Vault.start_attempt and wait for its batch; the new lease end, or None when it is not ours."""
        done: Future = Future()
        self._queue.put(("start", (credential_id, owner, ttl_seconds), done))
        return done.result()

    def _loop(self) -> None:
        stopping = False
        while True:
            batch = []
            if not stopping:
                first = self._queue.get()
                if first is None:
                    stopping = True
                else:
                    batch.append(first)
            # Take whatever else is queued; after the stop signal, keep draining until empty so a
            # late pair is still committed rather than left waiting.
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if not batch:
                if stopping:
                    return
                continue
            starts = [item for item in batch if item[0] == "start"]
            commits = [item for item in batch if item[0] == "commit"]
            for items, write in ((starts, self._start_many), (commits, self._commit_many)):
                if not items:
                    continue
                try:
                    results = write([args for _, args, _ in items])
                except Exception as exc:  # every waiting worker must hear about it
                    for *_, done in items:
                        done.set_exception(exc)
                    continue
                for (*_, done), result in zip(items, results, strict=True):
                    done.set_result(result)

    def _start_many(self, items: list[tuple[int, str, float]]) -> list[float | None]:
        # One lease term for the whole run (RefreshSettings.lease_seconds): the first item's is everyone's.
        return self.vault.start_attempts([(cid, owner) for cid, owner, _ in items], items[0][2])

    def _commit_many(self, items: list[tuple[int, int, object]]) -> list[bool]:
        return self.vault.commit_many(items)


def last_runs(db, limit: int = 10) -> list[dict]:
    """The newest task runs with their reports."""
    import json

    with db.read() as conn:
        rows = conn.execute(sa.select(task_runs).order_by(task_runs.c.started_at.desc()).limit(limit)).all()
    out = []
    for r in rows:
        item = dict(r._mapping)
        item["report"] = json.loads(r.report) if r.report else None
        out.append(item)
    return out
