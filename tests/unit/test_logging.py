"""The redacting log filter keeps secrets out of every log line, whatever the spelling of their names."""

import datetime
import io
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger as GunicornLogger

from models.logs import configure_logging, redact

SECRET = "s6p6eclrvim6da22ft9ch94ekreb52lv"

LINES = [
    f"POST /install auth[access_token]={SECRET}&auth[member_id]=x",
    f"GET /rest/user.current?auth={SECRET} HTTP/1.1",
    f"form AUTH_ID={SECRET}&REFRESH_ID={SECRET}",
    f'{{"refresh_token": "{SECRET}", "ok": 1}}',
    f"{{'client_secret': '{SECRET}'}}",
    f"auth[application_token]={SECRET}",
    f"APPLICATION_TOKEN={SECRET}",
    f"Authorization: Bearer {SECRET}",
    f"headers={{'Authorization': 'OAuth {SECRET}'}}",
    f"GET /api/admin/status?token={SECRET}",
    f"GET /auth/yandex/start?ticket={SECRET} HTTP/1.1",
    f"GET /auth/yandex/callback?code=1234567&state={SECRET}",
]
# Percent-encoded names: servers decode them, so they are the same fields; curl and requests send
# bracket keys as %5B…%5D.
ENCODED_LINES = [
    f"GET /api/admin/status?%74oken={SECRET} HTTP/1.1",
    f"GET /api/admin/status?t%6Fken={SECRET} HTTP/1.1",
    f"POST /events auth%5Bapplication_token%5D={SECRET}&event=ONAPPUNINSTALL",
    f"GET /auth/yandex/callback?c%6Fde={SECRET}&state=x",
    f"GET /api/admin/status?%2574oken={SECRET}",
    f"GET /?AUTH%5FID={SECRET}&DOMAIN=x",
    f"auth%5baccess_token%5d={SECRET}",
    f"GET /cb?x=1&TOKEN={SECRET}",
    f'{{"\\u0074oken": "{SECRET}"}}',
]


@pytest.fixture
def root_stream():
    """What the root handler installed by configure_logging writes."""
    configure_logging("INFO")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_b24_redacting", False))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.mark.parametrize("line", LINES + ENCODED_LINES)
def test_app_log_lines_are_redacted(root_stream, line):
    logging.getLogger("test.redaction").warning("request %s", line)
    text = root_stream.getvalue()
    assert SECRET not in text
    assert "[REDACTED]" in text


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/portal?member_id=abc&domain=acme.bitrix24.ru",
        "auth[member_id]=abc&auth[domain]=acme.bitrix24.ru",
        "tokens=3 codes=4",
    ],
)
def test_other_fields_are_kept(line):
    assert redact(line) == line


def test_exceptions_are_redacted(root_stream):
    try:
        raise ValueError(f"bad GET /x?t%6Fken={SECRET}")
    except ValueError:
        logging.getLogger("test.redaction").exception("boom")
    text = root_stream.getvalue()
    assert SECRET not in text and "ValueError: bad GET /x?t%6Fken=[REDACTED]" in text


def test_root_handler_redacts(root_stream):
    logging.getLogger("test.root").warning("client_secret=%s", SECRET)
    assert "client_secret=[REDACTED]" in root_stream.getvalue()
    assert SECRET not in root_stream.getvalue()


@pytest.fixture
def gunicorn_logger(tmp_path):
    """gunicorn's own logger class writing its access and error logs to files; handlers closed after."""
    cfg = GunicornConfig()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    logger = GunicornLogger(cfg)
    yield logger
    for log in (logger.access_log, logger.error_log):
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()


@pytest.mark.parametrize(
    "uri",
    [
        f"/api/admin/status?%74oken={SECRET}",
        f"/api/admin/status?t%6Fken={SECRET}",
        f"/events?auth%5Bapplication_token%5D={SECRET}",
        f"/auth/yandex/callback?c%6Fde={SECRET}&state=x",
        f"/api/admin/status?token={SECRET}",
    ],
)
def test_gunicorn_access_log_is_redacted(tmp_path, gunicorn_logger, uri):
    # gunicorn builds its own handlers; the filter configure_logging puts on its loggers still applies
    # (in a worker the app is loaded after gunicorn's logger set-up, hence that order here too).
    logger = gunicorn_logger
    configure_logging("INFO")
    path, _, query = uri.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": uri,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": f"https://x.example{uri}",
    }
    response = SimpleNamespace(status="401 UNAUTHORIZED", sent=10, headers=[])
    logger.access(response, SimpleNamespace(headers=[]), environ, datetime.timedelta(milliseconds=3))
    for handler in logging.getLogger("gunicorn.access").handlers:
        handler.flush()
    text = (tmp_path / "access.log").read_text()
    assert path in text and "401" in text
    assert SECRET not in text


def test_gunicorn_error_log_is_redacted(tmp_path, gunicorn_logger):
    logger = gunicorn_logger
    configure_logging("INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        # What a gunicorn worker logs when a request crashes: the raw URI, query string included.
        logger.exception("Error handling request %s", f"/api/admin/status?%74oken={SECRET}")
    for handler in logging.getLogger("gunicorn.error").handlers:
        handler.flush()
    text = (tmp_path / "error.log").read_text()
    assert "Error handling request /api/admin/status?%74oken=[REDACTED]" in text
    assert SECRET not in text
