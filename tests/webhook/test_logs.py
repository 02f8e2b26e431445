"""The webhook's code is redacted from every log line, in whatever shape the URL is logged."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest

from models.bitrix24 import Bitrix24Error

CODE = "k9x2m4q7w1e5r8t3"
URL = f"https://acme.bitrix24.ru/rest/12/{CODE}/"


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(f"POST {URL}calendar.event.add", id="url"),
        pytest.param(f'"POST /rest/12/{CODE}/batch HTTP/1.1" 200 826', id="request-line"),
        pytest.param(json.dumps({"url": URL}).replace("/", "\\/"), id="json-escaped-slashes"),
        pytest.param(f"next={quote(URL, safe='')}", id="percent-encoded-in-a-query"),
        pytest.param(f"url={URL.upper()}", id="upper-case"),
        pytest.param(f"webhook {URL.rstrip('/')}", id="no-trailing-slash"),
    ],
)
def test_configure_logging_redacts_the_code(root_stream, message):
    logging.getLogger("tests.webhook").warning("calling %s", message)
    err = root_stream.getvalue()
    assert "calling " in err
    assert CODE not in err
    assert CODE.upper() not in err


def test_exception_text_is_redacted(root_stream):
    try:
        raise Bitrix24Error("network_error", f"cannot reach {URL}profile")
    except Bitrix24Error:
        logging.getLogger("tests.webhook").exception("portal call failed")
    err = root_stream.getvalue()
    assert "portal call failed" in err and "/rest/12/[REDACTED]/profile" in err
    assert CODE not in err


def test_oauth_rest_paths_are_left_alone(root_stream):
    logging.getLogger("tests.webhook").warning("POST https://acme.bitrix24.ru/rest/user.current 200")
    assert "https://acme.bitrix24.ru/rest/user.current 200" in root_stream.getvalue()
