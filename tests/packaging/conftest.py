"""Fixtures of the packaging tests."""

from __future__ import annotations

import pytest

from scripts.stack import Stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    """One sandbox + app stack (gunicorn with gunicorn.conf.py, one worker) shared by the packaging tests."""
    tmp = tmp_path_factory.mktemp("pkg-stack")
    running = Stack(database_path=str(tmp / "app.db"), log_dir=tmp, workers=1)
    yield running
    running.stop()
