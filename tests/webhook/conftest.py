"""Fixtures for webhook mode: a live stack whose app runs with BITRIX24_WEBHOOK_URL from the sandbox."""

from __future__ import annotations

import io
import logging

import pytest
import requests

from models.logs import configure_logging
from scripts.stack import Stack


class WebhookStack(Stack):
    """Sandbox + app, the app started with an incoming webhook the sandbox issued for portal1's admin."""

    webhook_url = ""

    def _start_app(self, workers: int, extra: dict) -> None:
        response = requests.post(f"{self.base}/_sandbox/portals/portal1/webhooks", json={"user_id": 1}, timeout=30)
        assert response.status_code == 201, response.text
        self.webhook_url = response.json()["url"]
        super()._start_app(workers, {**extra, "BITRIX24_WEBHOOK_URL": self.webhook_url})


@pytest.fixture
def webhook_stack(tmp_path):
    """Two sandbox portals; the app (one gunicorn worker) serves only portal1, through its webhook.

    DEBUG logging: urllib3 then logs every request line, webhook path included, so the log tests see
    the code reach the logging system and leave it redacted.
    """
    stack = WebhookStack(
        database_path=str(tmp_path / "webhook.db"),
        portals=2,
        workers=1,
        log_dir=tmp_path,
        extra_app_env={"LOG_LEVEL": "DEBUG"},
    )
    yield stack
    stack.stop()


def webhook_code(url: str) -> str:
    """The secret part of an incoming webhook URL (…/rest/<user>/<code>/)."""
    return url.rstrip("/").rsplit("/", 1)[1]


@pytest.fixture
def root_stream():
    """What the root handler installed by configure_logging writes (its stream swapped for a buffer)."""
    configure_logging("INFO")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_b24_redacting", False))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)
