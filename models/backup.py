"""SQLite backups and restores (`flask db backup|restore`), and the lock that says "the app holds the database".

Backup: sqlite3's online backup API copies one consistent snapshot in a single step (one read transaction;
in WAL mode the app's writers go on meanwhile) into a temporary file beside the target. The copy is switched
to journal_mode=DELETE (one self-contained file), verified (PRAGMA integrity_check, an Alembic revision this
code knows) and only then renamed onto the target, so a half-written or unverified backup never has its name.

"The app holds the database": every process that builds the app on a SQLite file (each gunicorn worker, each
`flask` command) keeps a shared flock on `<db>.lock` beside the database for as long as it lives. A restore
needs the exclusive lock: the kernel refuses it while any such process runs and frees the shared locks of a
process the moment it dies, even after kill -9, so there is no stale heartbeat to second-guess. flock works
across the processes of one host on a local file system, which is where SQLite must live anyway.

PostgreSQL has its own tools: the commands to run (pg_dump, pg_restore) are built here from DATABASE_URL,
without its password. Errors are ServiceError codes; the command module (routes/backup.py) has the words.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shlex
import sqlite3
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from database import alembic_config
from models.errors import ServiceError

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
# How long a starting worker waits for a restore that holds the exclusive lock before it starts anyway.
HOLD_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class BackupInfo:
    """A verified backup file."""

    path: str
    size: int
    revision: str


@dataclass(frozen=True)
class RestoreInfo:
    """What a restore did: the revision now in place, the code's head, where the previous database went."""

    revision: str
    head: str
    kept: str | None


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def lock_path(db_path: str) -> str:
    """The lock file beside a database file."""
    return db_path + LOCK_SUFFIX


class DatabaseHold:
    """A shared flock on `<db>.lock`, held while this process may use the database; released at close."""

    def __init__(self, fd: int, owner):
        self.fd = fd
        # Released with its owner (the Flask app) at the latest, so short-lived test apps do not pile up fds.
        self._finalizer = weakref.finalize(owner, os.close, fd)

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        self._finalizer()


def hold_database(owner, url: str) -> DatabaseHold | None:
    """Take the shared "app holds the database" lock for a SQLite file database (see the module docstring)."""
    path = sqlite_path(url)
    if path is None:
        return None
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("cannot open the database lock file %s (%s): restores cannot see this process", path, exc)
        return None
    deadline = time.monotonic() + HOLD_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                log.warning("database lock %s not taken (%s): a restore may be running", lock_path(path), exc)
                break
            time.sleep(0.2)  # a restore holds it exclusively for a few seconds
    return DatabaseHold(fd, owner)


@contextlib.contextmanager
def exclusive(db_path: str, *, force: bool):
    """The exclusive lock on `<db>.lock` for a restore; refused (database_in_use) while an app process holds
    the shared one, unless `force` (then the restore goes on without it)."""
    fd = os.open(lock_path(db_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if not force:
                raise ServiceError("database_in_use", status=409, path=db_path) from None
            log.warning("restoring %s with --force while another process holds it", db_path)
        yield
    finally:
        os.close(fd)


def code_revisions(url: str) -> tuple[str, set[str]]:
    """The head revision of migrations/ and every revision this code knows."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    return script.get_current_head(), {rev.revision for rev in script.walk_revisions()}


def verify(path: str, url: str, *, shown: str | None = None) -> str:
    """Open a database copy and check it: integrity ok and an Alembic revision this code knows. Its revision.

    `shown` is the name errors give (the file the operator named, when `path` is a temporary copy of it)."""
    name = shown or path
    try:
        conn = sqlite3.connect(_read_only(path), uri=True)
    except sqlite3.Error:
        raise ServiceError("backup_unreadable", path=name) from None
    try:
        try:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError:
            raise ServiceError("backup_not_sqlite", path=name) from None
        if problems != ["ok"]:
            raise ServiceError("backup_integrity_failed", path=name, detail="; ".join(problems[:3]))
        try:
            revisions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
        except sqlite3.DatabaseError:
            revisions = []
    finally:
        conn.close()
    if len(revisions) != 1:
        raise ServiceError("backup_no_revision", path=name)
    head, known = code_revisions(url)
    if revisions[0] not in known:
        # Not in our migrations: written by a newer version of the app (or another app altogether).
        raise ServiceError("backup_revision_unknown", path=name, revision=revisions[0], head=head)
    return revisions[0]


def _read_only(path: str) -> str:
    """A read-only SQLite URI for a file (any character of its name quoted)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def _copy(source: str, target: str) -> None:
    """A consistent online copy of `source` into the new file `target`, made self-contained (no WAL)."""
    src = sqlite3.connect(_read_only(source), uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)  # all pages in one step: one snapshot, however busy the writers are
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.commit()
    finally:
        dst.close()
        src.close()


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be synced
        _fsync_file(str(Path(path).parent))


def _temporary(beside: str, kind: str) -> str:
    target = Path(beside)
    return str(target.with_name(f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}.tmp"))


def _copy_verified(source: str, target: str, url: str) -> str:
    """Copy `source` into `target` and verify the copy (the temporary file is removed on failure)."""
    try:
        try:
            _copy(source, target)
        except sqlite3.DatabaseError:
            raise ServiceError("backup_not_sqlite", path=source) from None
        revision = verify(target, url, shown=source)
        _fsync_file(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        raise
    return revision


def backup(url: str, dest: str, *, force: bool = False) -> BackupInfo:
    """Write a verified online backup of the app's SQLite database to `dest`."""
    db_path = sqlite_path(url)
    if db_path is None:
        raise ServiceError("backup_postgresql", command=pg_dump_command(url, dest))
    if not os.path.isfile(db_path):
        raise ServiceError("database_missing", path=db_path)
    if os.path.exists(dest) and not force:
        raise ServiceError("backup_exists", path=dest)
    if os.path.isdir(dest):
        raise ServiceError("backup_exists", path=dest)
    if os.path.realpath(dest) == os.path.realpath(db_path):
        raise ServiceError("backup_is_the_database", path=dest)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(dest, "backup")
    revision = _copy_verified(db_path, tmp, url)
    os.replace(tmp, dest)
    _fsync_dir(dest)
    return BackupInfo(path=os.path.abspath(dest), size=os.path.getsize(dest), revision=revision)


def restore(url: str, source: str, *, force: bool = False) -> RestoreInfo:
    """Replace the app's SQLite database with a verified copy of `source`; the current one is kept beside it."""
    db_path = sqlite_path(url)
    if db_path is None:
        raise ServiceError("restore_postgresql", command=pg_restore_command(url, source))
    if not os.path.isfile(source):
        raise ServiceError("backup_missing", path=source)
    if os.path.exists(db_path) and os.path.realpath(source) == os.path.realpath(db_path):
        raise ServiceError("backup_is_the_database", path=source)
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    head, _known = code_revisions(url)
    with exclusive(db_path, force=force):
        tmp = _temporary(db_path, "restore")
        revision = _copy_verified(source, tmp, url)
        kept = None
        try:
            if os.path.exists(db_path):
                kept = f"{db_path}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                _keep(db_path, kept)
            # A -wal left from the old database would be replayed onto the new one: it goes first.
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(db_path + suffix)
            os.replace(tmp, db_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(db_path)
    return RestoreInfo(revision=revision, head=head, kept=kept)


def _keep(db_path: str, kept: str) -> None:
    """Save the current database as `kept` (with its WAL content); a file SQLite cannot read is copied as is."""
    import shutil

    try:
        _copy(db_path, kept)
    except sqlite3.DatabaseError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(kept)
        for suffix in ("", "-wal"):
            if os.path.exists(db_path + suffix):
                shutil.copy2(db_path + suffix, kept + suffix)


def _pg_options(url: str) -> list[str]:
    parsed = sa.engine.make_url(url)
    options = []
    if parsed.host:
        options.append(f"--host={parsed.host}")
    if parsed.port:
        options.append(f"--port={parsed.port}")
    if parsed.username:
        options.append(f"--username={parsed.username}")
    return options


def pg_dump_command(url: str, dest: str) -> str:
    """The pg_dump command that backs up DATABASE_URL's database to `dest` (no password: PGPASSWORD/.pgpass)."""
    database = sa.engine.make_url(url).database or ""
    return shlex.join(["pg_dump", *_pg_options(url), "--format=custom", f"--file={dest}", database])


def pg_restore_command(url: str, source: str) -> str:
    """The pg_restore command that loads a pg_dump file into DATABASE_URL's database (no password)."""
    database = sa.engine.make_url(url).database or ""
    return shlex.join(
        ["pg_restore", *_pg_options(url), "--clean", "--if-exists", "--no-owner", f"--dbname={database}", source]
    )
