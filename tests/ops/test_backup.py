"""`flask db backup|restore`: online, verified copies of the SQLite database, and restores that refuse to
run under a live app."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from models import backup
from models.errors import ServiceError
from scripts.stack import Stack
from tests.ops.conftest import rows

HEAD = backup.code_revisions("sqlite:///unused.db")[0]


def probe_writer(path: str, stop: threading.Event, committed: list[int]) -> None:
    """Insert 1, 2, 3 … into `probe`, one commit each, recording the last committed number."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        n = 0
        while not stop.is_set():
            n += 1
            conn.execute("INSERT INTO probe (n) VALUES (?)", (n,))
            conn.commit()
            committed.append(n)
    finally:
        conn.close()


def test_backup_while_a_writer_keeps_inserting(app, tmp_path):
    db_path = app.config["DATABASE_PATH"]
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE probe (n INTEGER PRIMARY KEY)")
    conn.close()
    stop, committed = threading.Event(), []
    writer = threading.Thread(target=probe_writer, args=(db_path, stop, committed))
    writer.start()
    try:
        while len(committed) < 200:  # the writer is well under way
            threading.Event().wait(0.01)
        before = committed[-1]
        info = backup.backup(app.extensions["db"].url, str(tmp_path / "backups" / "copy.db"))
        after = committed[-1]
        while len(committed) < after + 50:  # and it goes on after the backup: nothing was blocked
            threading.Event().wait(0.01)
    finally:
        stop.set()
        writer.join()
    assert info.revision == HEAD
    assert info.size == os.path.getsize(tmp_path / "backups" / "copy.db")
    assert rows(info.path, "PRAGMA integrity_check") == [("ok",)]
    assert rows(info.path, "PRAGMA journal_mode") == [("delete",)]  # one self-contained file
    numbers = [n for (n,) in rows(info.path, "SELECT n FROM probe ORDER BY n")]
    # One snapshot: every row up to some point during the backup, none missing in between.
    assert before <= len(numbers) <= after
    assert numbers == list(range(1, len(numbers) + 1))
    assert os.listdir(tmp_path / "backups") == ["copy.db"]  # no temporary file left


def test_backup_refuses_an_existing_path_unless_forced(flask_cli, cli_env, tmp_path):
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    refused = flask_cli("db", "backup", str(target))
    assert refused.returncode == 1
    assert f"{target} already exists (give --force to overwrite it)" in refused.stderr
    assert target.read_text() == "an older backup"
    forced = flask_cli("db", "backup", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    size = target.stat().st_size
    assert forced.stdout.strip() == f"backup written: {target} ({size} bytes, schema revision {HEAD})"
    assert rows(target, "SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_on_postgresql_backup_prints_the_pg_dump_command_without_the_password(flask_cli, tmp_path):
    url = "postgresql://postgres:s3cret-pass@127.0.0.1:5432/test"
    result = flask_cli("db", "backup", str(tmp_path / "app.dump"), env={"DATABASE_URL": url, "AUTO_MIGRATE": "0"})
    assert result.returncode == 1
    command = (
        f"pg_dump --host=127.0.0.1 --port=5432 --username=postgres --format=custom --file={tmp_path}/app.dump test"
    )
    assert command in result.stderr
    assert "s3cret-pass" not in result.stdout + result.stderr
    assert not (tmp_path / "app.dump").exists()


def test_pg_restore_command_has_no_password():
    command = backup.pg_restore_command("postgresql://app:pw@db.internal/telemost", "/backups/app.dump")
    assert command == (
        "pg_restore --host=db.internal --username=app --clean --if-exists --no-owner --dbname=telemost "
        "/backups/app.dump"
    )


def corrupt_copy(good: Path, target: Path) -> None:
    """A SQLite file whose pages are damaged past its header (integrity_check or the copy fails)."""
    data = bytearray(good.read_bytes())
    page = 4096
    for offset in range(page * 2, len(data) - page, page * 3):
        data[offset + 8 : offset + 400] = os.urandom(392)
    target.write_bytes(bytes(data))


def future_copy(good: Path, target: Path) -> None:
    """A backup written by a newer app: its revision is not in this code's migrations."""
    target.write_bytes(good.read_bytes())
    conn = sqlite3.connect(target)
    conn.execute("UPDATE alembic_version SET version_num = '0099_future'")
    conn.commit()
    conn.close()


def text_file(good: Path, target: Path) -> None:
    """A file that is not a database at all."""
    target.write_text("name,email\nann,ann@example.com\n" * 200)


@pytest.mark.parametrize(
    ("make", "codes"),
    [
        (text_file, {"backup_not_sqlite"}),
        (corrupt_copy, {"backup_not_sqlite", "backup_integrity_failed"}),
        (lambda good, target: target.write_bytes(b""), {"backup_no_revision"}),
        (future_copy, {"backup_revision_unknown"}),
    ],
    ids=["text file", "damaged pages", "empty file", "newer schema"],
)
def test_restore_refuses_a_bad_backup_and_leaves_the_database_alone(cli_env, tmp_path, make, codes):
    db_path = Path(cli_env["DATABASE_PATH"])
    url = f"sqlite:///{db_path}"
    good = tmp_path / "good.db"
    backup.backup(url, str(good))
    before = db_path.read_bytes()
    bad = tmp_path / "bad.db"
    make(good, bad)
    with pytest.raises(ServiceError) as refused:
        backup.restore(url, str(bad), force=True)
    assert refused.value.code in codes
    assert refused.value.params["path"] == str(bad)  # the file the operator named, not a temporary copy
    assert db_path.read_bytes() == before
    left = [p.name for p in db_path.parent.iterdir() if "before-restore" in p.name or p.name.endswith(".tmp")]
    assert left == []  # nothing kept, no temporary copy left


def test_restore_command_explains_the_refusal(flask_cli, cli_env, tmp_path):
    before = Path(cli_env["DATABASE_PATH"]).read_bytes()
    text_file(tmp_path, tmp_path / "notes.db")
    result = flask_cli("db", "restore", str(tmp_path / "notes.db"))
    assert result.returncode == 1
    assert result.stderr == f"Error: {tmp_path / 'notes.db'} is not a SQLite database\n"
    assert Path(cli_env["DATABASE_PATH"]).read_bytes() == before


def test_round_trip_brings_the_data_back(flask_cli, cli_env, tmp_path):
    db_path = cli_env["DATABASE_PATH"]

    def portal(member_id: str) -> None:
        conn = sqlite3.connect(db_path)
        conn.execute(
            "INSERT INTO portals (member_id, domain, client_endpoint, server_endpoint, installed_at, updated_at) "
            "VALUES (?, 'a.example', 'https://a.example/rest/', 'https://oauth.example/rest/', 1, 1)",
            (member_id,),
        )
        conn.commit()
        conn.close()

    portal("kept-before-backup")
    assert flask_cli("db", "backup", str(tmp_path / "monday.db")).returncode == 0
    portal("added-after-backup")
    # Leave a -wal behind as a crashed app would: the restore must not replay it onto the backup.
    crashed = sqlite3.connect(db_path)
    crashed.execute("PRAGMA journal_mode=WAL")
    crashed.execute("PRAGMA wal_autocheckpoint=0")
    crashed.execute("UPDATE portals SET domain = 'changed.example'")
    crashed.commit()
    wal = Path(db_path + "-wal").read_bytes()
    crashed.close()
    if not Path(db_path + "-wal").exists():
        Path(db_path + "-wal").write_bytes(wal)

    result = flask_cli("db", "restore", str(tmp_path / "monday.db"))
    assert result.returncode == 0, result.stderr
    kept = [p for p in Path(db_path).parent.iterdir() if ".before-restore-" in p.name]
    assert len(kept) == 1
    assert result.stdout.splitlines() == [
        f"the previous database is kept as {kept[0]}",
        f"restored {tmp_path / 'monday.db'} (schema revision {HEAD})",
    ]
    assert rows(db_path, "SELECT member_id, domain FROM portals") == [("kept-before-backup", "a.example")]
    assert rows(db_path, "PRAGMA integrity_check") == [("ok",)]
    # The kept database is the one the restore replaced, with its last (WAL) changes.
    assert rows(kept[0], "SELECT member_id, domain FROM portals ORDER BY member_id") == [
        ("added-after-backup", "changed.example"),
        ("kept-before-backup", "changed.example"),
    ]


def test_restore_of_an_older_schema_says_to_upgrade(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    conn.execute("INSERT INTO alembic_version VALUES ('0001')")
    conn.commit()
    conn.close()
    info = backup.restore(f"sqlite:///{tmp_path / 'app.db'}", str(db))
    assert (info.revision, info.head, info.kept) == ("0001", HEAD, None)
    with pytest.raises(ServiceError) as refused:
        backup.restore(f"sqlite:///{tmp_path / 'app.db'}", str(tmp_path / "missing.db"))
    assert refused.value.code == "backup_missing"


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory):
    """The app under gunicorn (production settings) on SQLite beside the sandbox, one portal installed."""
    workdir = tmp_path_factory.mktemp("ops-backup")
    stack = Stack(database_path=str(workdir / "data" / "app.db"), log_dir=workdir, workers=2)
    try:
        stack.control("POST", "/_sandbox/portals/portal1/install", {"mode": "event"}, expect=200)
        yield stack
    finally:
        stack.stop()


def test_backup_and_restore_against_a_running_gunicorn_app(live_stack, tmp_path):
    stack = live_stack
    db_path = Path(stack.database_path)
    member = rows(db_path, "SELECT member_id FROM portals")
    assert len(member) == 1

    made = stack.flask("db", "backup", str(tmp_path / "live.db"))
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"backup written: {tmp_path / 'live.db'} (")
    assert rows(tmp_path / "live.db", "SELECT member_id FROM portals") == member
    assert rows(tmp_path / "live.db", "PRAGMA integrity_check") == [("ok",)]

    inode = db_path.stat().st_ino
    refused = stack.flask("db", "restore", str(tmp_path / "live.db"))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"Error: the app is running on {db_path} (a process holds {db_path}.lock): stop it first, "
        "or give --force if you are sure"
    )
    assert db_path.stat().st_ino == inode  # the very same file, untouched
    assert not [p for p in db_path.parent.iterdir() if "before-restore" in p.name]
    assert rows(db_path, "SELECT member_id FROM portals") == member

    forced = stack.flask("db", "restore", str(tmp_path / "live.db"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert db_path.stat().st_ino != inode
    assert len([p for p in db_path.parent.iterdir() if "before-restore" in p.name]) == 1
    assert rows(db_path, "SELECT member_id FROM portals") == member
