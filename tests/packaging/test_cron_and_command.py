"""Against a real gunicorn stack: the compose cron service's script reaches both task endpoints with the
token, and the stack runs gunicorn exactly as the image's CMD does."""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from tests.packaging import images


def _task_runs(database_path: str) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(database_path)) as conn:
        return conn.execute("select task, trigger from task_runs order by id").fetchall()


def _calls(out: Path) -> list[list[str]]:
    """[path, status] of each call the cron script printed (a response body may span lines)."""
    return [line.split(" ", 2)[:2] for line in out.read_text().splitlines() if line.startswith("/tasks/")]


def test_cron_script_posts_both_tasks_with_the_token(stack, tmp_path):
    script = images.compose()["services"]["cron"]["command"][2]
    script = script.replace('APP = "http://app:8000"', f'APP = "{stack.app_url}"')
    assert stack.app_url in script
    out = tmp_path / "cron.out"
    with out.open("wb") as log:
        cron = subprocess.Popen(
            [sys.executable, "-c", script],
            env={"CRON_TOKEN": stack.env["CRON_TOKEN"], "PATH": "/usr/bin:/bin"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(_calls(out)) < 2:
                time.sleep(0.1)
        finally:
            cron.terminate()
            cron.wait(timeout=10)
    assert sorted(_calls(out)) == [
        ["/tasks/process-events", "200"],
        ["/tasks/refresh", "200"],
    ]
    assert sorted(_task_runs(stack.database_path)) == [("process-events", "http"), ("refresh", "http")]
    assert stack.env["CRON_TOKEN"] not in out.read_text()


def test_cron_script_reports_a_refused_token(stack, tmp_path):
    script = images.compose()["services"]["cron"]["command"][2].replace("http://app:8000", stack.app_url)
    before = len(_task_runs(stack.database_path))
    cron = subprocess.Popen(
        [sys.executable, "-c", script],
        env={"CRON_TOKEN": "not-the-token", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first, second = cron.stdout.readline(), cron.stdout.readline()
    finally:
        cron.terminate()
        cron.wait(timeout=10)
        cron.stdout.close()
    assert sorted([first.split(" ", 1)[0], second.split(" ", 1)[0]]) == ["/tasks/process-events", "/tasks/refresh"]
    assert "failed: HTTP Error 401" in first and "failed: HTTP Error 401" in second
    assert len(_task_runs(stack.database_path)) == before


def test_stack_runs_the_image_gunicorn_command(stack):
    """The command line of the stack's running gunicorn (from /proc) is the image's CMD plus test-sized overrides."""
    gunicorn = stack.procs[-1]
    argv = Path(f"/proc/{gunicorn.pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    if Path(argv[0]).name.startswith("python"):  # the gunicorn script, run by its interpreter
        argv = argv[1:]
    image = shlex.split(images.image_cmd()[2].split("&&")[1])
    assert image[:2] == ["exec", "gunicorn"]
    assert Path(argv[0]).name == "gunicorn"
    assert argv[1] == image[2] == "--config"
    assert Path(argv[2]).resolve() == (images.ROOT / image[3]).resolve()
    assert argv[3] == image[4] == "app:app"
