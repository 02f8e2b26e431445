"""Counters kept in the database so that /metrics is right whichever gunicorn worker answers.

`/metrics` is rendered by prometheus_client from `DatabaseCollector`, which reads these counters and the
credential, portal, run and bot inbox tables at every scrape; nothing is kept in the worker's memory beyond
the few seconds' increments a worker buffers before adding them (HTTP_FLUSH_SECONDS).
docs/alerts.yml holds the Prometheus alerting rules built on these names.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, bot_inbox, metric_counters, task_runs

PREFIX = "b24_"
# The classic text format, as /metrics has always declared it (every Prometheus version reads it).
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
HELP = {
    "refresh_attempts_total": "Refresh requests sent to OAuth providers.",
    "refresh_success_total": "Refreshes whose new pair was stored.",
    "refresh_failures_total": "Failed refresh requests by error class (transient, permanent, lost_response).",
    "credentials_needs_reauth_total": "Credentials that became needs_reauth.",
    "credentials_restored_total": "Credentials that needed re-authorisation and got a working pair again.",
    "refresh_runs_total": "Refresh runs by trigger.",
    "http_responses_total": "HTTP responses by status class (2xx, 3xx, 4xx, 5xx).",
}
# Cron tasks whose newest run /metrics reports (refresh every 5 min, process-events every 1 min).
TASKS = ("refresh", "process-events")
INBOX_STATUSES = ("pending", "done", "failed")
# A worker adds its buffered HTTP counts to the database at most this often (and on its first response):
# one write per worker every few seconds, not one per request.
HTTP_FLUSH_SECONDS = 5.0
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def label_string(labels: dict[str, str]) -> str:
    """Prometheus label text, sorted so the same labels always make the same key."""
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def parse_labels(text: str) -> dict[str, str]:
    """The labels of a stored key (the inverse of label_string)."""
    return {name: value for name, value in _LABEL.findall(text)}


class Metrics:
    """Buffered counters: increments gather in memory and `flush()` adds them in one transaction."""

    def __init__(self, db: Database):
        self.db = db
        self._pending: Counter = Counter()
        self._lock = threading.Lock()
        self._flushed_at = 0.0

    def incr(self, name: str, by: int = 1, **labels: str) -> None:
        """Count an event (written on the next flush)."""
        with self._lock:
            self._pending[(name, label_string(labels))] += by

    def count_response(self, status: int) -> None:
        """Count one HTTP response by its status class; stored within HTTP_FLUSH_SECONDS."""
        self.incr("http_responses_total", status_class=f"{status // 100}xx")
        if time.monotonic() - self._flushed_at >= HTTP_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Add the buffered increments to the stored counters."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._flushed_at = time.monotonic()
        if not pending:
            return
        with self.db.write() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for (name, labels), value in pending.items():
                # An upsert, so two workers creating the same counter at once cannot collide.
                stmt = insert(metric_counters).values(name=name, labels=labels, value=value)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["name", "labels"], set_={"value": metric_counters.c.value + value}
                    )
                )

    def counters(self) -> list[tuple[str, str, int]]:
        """Every stored counter as (name, labels, value)."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(metric_counters.c.name, metric_counters.c.labels, metric_counters.c.value).order_by(
                    metric_counters.c.name, metric_counters.c.labels
                )
            ).all()
        return [(r.name, r.labels, int(r.value)) for r in rows]


class DatabaseCollector:
    """A prometheus_client collector over the database: credential and portal gauges, the stored counters
    and the newest refresh run. Names and labels are those /metrics has always had (b24_…)."""

    def __init__(self, services):
        self.services = services

    def describe(self) -> list:
        """Nothing up front: the counters present depend on the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read the database once per scrape and yield the metric families."""
        from models.vault import STATUSES

        services = self.services
        summary = services.vault.summary()
        credentials = GaugeMetricFamily(
            f"{PREFIX}credentials", "Stored credentials by provider and status.", labels=["provider", "status"]
        )
        for provider in services.engine.providers:
            for status in STATUSES:
                credentials.add_metric([provider, status], summary.get(provider, {}).get(status, 0))
        yield credentials

        by_name: dict[str, list[tuple[dict[str, str], int]]] = {name: [] for name in HELP}
        for name, labels, value in services.metrics.counters():
            by_name.setdefault(name, []).append((parse_labels(labels), value))
        for name in sorted(by_name):
            yield _counter(f"{PREFIX}{name}", HELP.get(name, name), by_name[name])

        newest = _newest_runs(services.db)
        duration = GaugeMetricFamily(
            f"{PREFIX}refresh_last_run_duration_seconds", "Duration of the newest finished refresh run."
        )
        age = GaugeMetricFamily(
            f"{PREFIX}refresh_last_run_age_seconds", "Seconds since the newest refresh run started."
        )
        refresh = newest.get("refresh")
        if refresh:
            duration.add_metric([], round((refresh["duration_ms"] or 0) / 1000, 3))
            age.add_metric([], round(time.time() - refresh["started_at"]))
        yield duration
        yield age

        # Per cron task, for "has the scheduler stopped?" alerts: time() - this > three periods.
        started = GaugeMetricFamily(
            f"{PREFIX}task_last_run_timestamp_seconds",
            "Unix time the newest run of each cron task started.",
            labels=["task"],
        )
        finished = GaugeMetricFamily(
            f"{PREFIX}task_last_finished_timestamp_seconds",
            "Unix time the newest finished run of each cron task ended.",
            labels=["task"],
        )
        for task in TASKS:
            row = newest.get(task)
            if row:
                started.add_metric([task], round(row["started_at"], 3))
                if row["finished_at"]:
                    finished.add_metric([task], round(row["finished_at"], 3))
        yield started
        yield finished

        inbox, oldest = _inbox_state(services.db)
        events = GaugeMetricFamily(f"{PREFIX}bot_inbox_events", "Bot inbox rows by status.", labels=["status"])
        for status in sorted(set(INBOX_STATUSES) | set(inbox)):
            events.add_metric([status], inbox.get(status, 0))
        yield events
        pending_age = GaugeMetricFamily(
            f"{PREFIX}bot_inbox_oldest_pending_age_seconds",
            "Seconds since the oldest pending bot event arrived (0 when none is pending).",
        )
        pending_age.add_metric([], round(time.time() - oldest, 3) if oldest else 0)
        yield pending_age

        portals = GaugeMetricFamily(f"{PREFIX}portals", "Portals by status.", labels=["status"])
        for status, count in sorted(services.portals.counts().items()):
            portals.add_metric([status], count)
        yield portals


def _newest_runs(db: Database) -> dict[str, dict]:
    """The newest run of each cron task (refresh, process-events) as a row mapping."""
    out = {}
    with db.read() as conn:
        for task in TASKS:
            row = conn.execute(
                sa.select(task_runs.c.started_at, task_runs.c.finished_at, task_runs.c.duration_ms)
                .where(task_runs.c.task == task)
                .order_by(task_runs.c.started_at.desc())
                .limit(1)
            ).first()
            if row:
                out[task] = dict(row._mapping)
    return out


def _inbox_state(db: Database) -> tuple[dict[str, int], float | None]:
    """Bot inbox rows by status, and when the oldest pending one arrived."""
    with db.read() as conn:
        counts = dict(conn.execute(sa.select(bot_inbox.c.status, sa.func.count()).group_by(bot_inbox.c.status)).all())
        oldest = conn.execute(
            sa.select(sa.func.min(bot_inbox.c.received_at)).where(bot_inbox.c.status == "pending")
        ).scalar()
    return {k: int(v) for k, v in counts.items()}, oldest


def _counter(name: str, documentation: str, samples: list[tuple[dict[str, str], int]]) -> Metric:
    # prometheus_client names a counter's samples <name>_total; a stored counter without that suffix
    # keeps its exact name as an untyped metric rather than being renamed under its scrapers.
    if name.endswith("_total"):
        family: Metric = CounterMetricFamily(name, documentation)
    else:
        family = UnknownMetricFamily(name, documentation)
    for labels, value in samples:
        family.add_sample(name, labels, value)
    return family


def build_registry(services) -> CollectorRegistry:
    """A registry holding only the database collector (built once per app)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(services))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (version 0.0.4)."""
    return generate_latest(registry)
