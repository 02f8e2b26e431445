"""Fixtures of the Open Lines bot tests (helpers in tests/openlines/helpers.py)."""

from __future__ import annotations

import pytest

from app import create_app
from tests.openlines.helpers import FakeRest, bot_config, patch_rest


@pytest.fixture
def rest():
    """The recording portal REST fake."""
    return FakeRest()


@pytest.fixture
def bot_app(tmp_path, rest):
    """The app on SQLite with the fake portal REST."""
    application = create_app(bot_config(tmp_path))
    patch_rest(application.extensions["services"], rest)
    yield application
    application.extensions["db"].dispose()


@pytest.fixture
def bot_app_any_db(storage_config, rest):
    """The app on SQLite, then on PostgreSQL."""
    storage_config.update(BOT_BACKGROUND_WORKER=False, BOT_BACKOFF_SECONDS=0.0)
    application = create_app(storage_config)
    patch_rest(application.extensions["services"], rest)
    yield application
    application.extensions["db"].dispose()
