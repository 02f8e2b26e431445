"""The card's API tests run on SQLite and on PostgreSQL (skipped with a message when no server answers)."""

from __future__ import annotations

import pytest


@pytest.fixture
def config(storage_config):
    """The app's config on each storage backend in turn."""
    return storage_config
