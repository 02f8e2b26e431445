"""Fixtures of the seeds' URL and recovery-notice tests."""

from __future__ import annotations

import pytest

from app import create_app
from tests.openlines.helpers import FakeRest, bot_config, patch_rest


@pytest.fixture
def rest():
    """The recording portal REST fake of the bot tests."""
    return FakeRest()


@pytest.fixture
def seeds_app(tmp_path, rest):
    """The app on SQLite with the fake portal REST (the API answers without a live portal)."""
    application = create_app(bot_config(tmp_path))
    patch_rest(application.extensions["services"], rest)
    yield application
    application.extensions["db"].dispose()


@pytest.fixture
def client(seeds_app):
    """Flask test client of seeds_app."""
    return seeds_app.test_client()


@pytest.fixture
def services(seeds_app):
    """seeds_app's wired models."""
    return seeds_app.extensions["services"]
