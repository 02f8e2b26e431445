"""`flask db backup PATH` and `flask db restore PATH`: the operator's commands around models/backup.py.

They join the `flask db` group that database.py defines (next to `flask db upgrade`). The words are plain
English, as in the other operator commands (`flask portals`, `flask bot`): this is a CLI, not the UI.
"""

from __future__ import annotations

import click
from flask import current_app

from models import backup
from models.errors import ServiceError

# What each refusal of models/backup.py means to the operator.
MESSAGES = {
    "backup_postgresql": "DATABASE_URL is PostgreSQL: back it up with pg_dump (password from PGPASSWORD or "
    "~/.pgpass):\n  {command}",
    "restore_postgresql": "DATABASE_URL is PostgreSQL: restore a pg_dump file with pg_restore (stop the app "
    "first; password from PGPASSWORD or ~/.pgpass):\n  {command}",
    "database_missing": "there is no database at {path}",
    "backup_exists": "{path} already exists (give --force to overwrite it)",
    "backup_is_the_database": "{path} is the app's database itself",
    "backup_missing": "there is no backup file at {path}",
    "backup_unreadable": "{path} cannot be opened",
    "backup_not_sqlite": "{path} is not a SQLite database",
    "backup_integrity_failed": "{path} failed PRAGMA integrity_check: {detail}",
    "backup_no_revision": "{path} has no schema revision (alembic_version): not a database of this app",
    "backup_revision_unknown": "{path} is at schema revision {revision}, which this version of the app does not "
    "know (its newest is {head}): it comes from a newer version",
    "database_in_use": "the app is running on {path} (a process holds {path}.lock): stop it first, or give "
    "--force if you are sure",
}


def _refusal(exc: ServiceError) -> click.ClickException:
    template = MESSAGES.get(exc.code, exc.message)
    return click.ClickException(template.format(**exc.params))


def _url() -> str:
    return current_app.extensions["db"].url


def init_cli(app) -> None:
    """Add `backup` and `restore` to the `flask db` group."""
    group = app.cli.commands["db"]

    @group.command("backup")
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="overwrite PATH if it exists")
    def backup_command(path, force):
        """Copy the SQLite database to PATH while the app runs, and verify the copy."""
        try:
            info = backup.backup(_url(), path, force=force)
        except ServiceError as exc:
            raise _refusal(exc) from None
        click.echo(f"backup written: {info.path} ({info.size} bytes, schema revision {info.revision})")

    @group.command("restore")
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="restore even though a process holds the database")
    def restore_command(path, force):
        """Replace the SQLite database with the backup at PATH (stop the app first)."""
        # This command's own app holds the database too: it lets go before asking for the exclusive lock.
        hold = current_app.extensions.get("db_hold")
        if hold is not None:
            hold.release()
        current_app.extensions["db"].dispose()
        try:
            info = backup.restore(_url(), path, force=force)
        except ServiceError as exc:
            raise _refusal(exc) from None
        if info.kept:
            click.echo(f"the previous database is kept as {info.kept}")
        click.echo(f"restored {path} (schema revision {info.revision})")
        if info.revision != info.head:
            click.echo(f"the code's schema is {info.head}: run `flask db upgrade` before starting the app")
