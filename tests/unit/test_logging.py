"""The redacting log filter keeps secrets out of every log line."""

import io
import logging

import pytest

from models.logs import RedactingFilter, configure_logging, redact

SECRET = "s6p6eclrvim6da22ft9ch94ekreb52lv"


@pytest.mark.parametrize(
    "line",
    [
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
    ],
)
def test_redact(line):
    assert SECRET not in redact(line)


def test_filter_on_records_and_exceptions(caplog):
    configure_logging("INFO")
    logger = logging.getLogger("test.redaction")
    handler_filter = RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    logger.info("refresh with refresh_token=%s failed", SECRET)
    try:
        raise ValueError(f"bad access_token={SECRET}")
    except ValueError:
        logger.exception("boom")
    text = caplog.text
    assert SECRET not in text
    assert "[REDACTED]" in text


def test_root_handler_redacts():
    configure_logging("INFO")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_b24_redacting", False))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        logging.getLogger("test.root").warning("client_secret=%s", SECRET)
    finally:
        handler.setStream(previous)
    err = buffer.getvalue()
    assert SECRET not in err
    assert "client_secret=[REDACTED]" in err


def test_gunicorn_access_log_is_redacted():
    configure_logging("INFO")
    logger = logging.getLogger("gunicorn.access")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    try:
        # gunicorn logs its access line as a format string with a dict of atoms.
        logger.info('%(h)s "%(r)s" %(s)s', {"h": "127.0.0.1", "r": f"GET /api/admin/status?token={SECRET}", "s": "200"})
    finally:
        logger.removeHandler(handler)
    assert SECRET not in buffer.getvalue() and "token=[REDACTED]" in buffer.getvalue()
