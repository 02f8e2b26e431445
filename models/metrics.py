"""Counters kept in the database so that /metrics is right whichever gunicorn worker answers."""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import Database, metric_counters


def label_string(labels: dict[str, str]) -> str:
    """Prometheus label text, sorted so the same labels always make the same key."""
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


class Metrics:
    """Buffered counters: increments gather in memory and `flush()` adds them in one transaction."""

    def __init__(self, db: Database):
        self.db = db
        self._pending: Counter = Counter()
        self._lock = threading.Lock()

    def incr(self, name: str, by: int = 1, **labels: str) -> None:
        """Count an event (written on the next flush)."""
        with self._lock:
            self._pending[(name, label_string(labels))] += by

    def flush(self) -> None:
        """Add the buffered increments to the stored counters."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
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
