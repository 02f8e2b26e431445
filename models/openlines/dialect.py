"""The INSERT construct with ON CONFLICT for the connection's database (SQLite or PostgreSQL)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def upsert_insert(conn):
    """`insert` of the dialect, whose statements offer on_conflict_do_nothing / on_conflict_do_update."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
