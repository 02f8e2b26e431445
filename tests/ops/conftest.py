"""Fixtures of the operations tests: `flask` commands run as the operator runs them, on a tmp database."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from database import Database, make_url
from scripts.stack import ROOT, clean_environ, generated_env


def rows(path: str | Path, query: str) -> list[tuple]:
    """Rows of a query on a SQLite file, with the connection closed again."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> Path:
    """A SQLite file at the newest schema, migrated once (tests copy it: a `flask db upgrade` costs seconds)."""
    path = tmp_path_factory.mktemp("ops-template") / "template.db"
    db = Database(make_url("", str(path)), pool_size=1)
    try:
        db.upgrade()
    finally:
        db.dispose()
    return path


@pytest.fixture
def cli_env(tmp_path, migrated_template):
    """The environment of a `flask` command on a fresh SQLite file at the newest schema."""
    database = tmp_path / "data" / "app.db"
    database.parent.mkdir()
    shutil.copyfile(migrated_template, database)
    return {
        **clean_environ(),
        **generated_env(),
        "DATABASE_PATH": str(database),
        "AUTO_MIGRATE": "0",
        "PUBLIC_URL": "https://app.example.com",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def flask_cli(cli_env):
    """Run `flask --app app <args>` like an operator; returns the finished process (text output)."""

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env={**cli_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run
