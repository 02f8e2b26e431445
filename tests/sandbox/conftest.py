"""Fixtures for the sandbox tests: credentials, a running sandbox, an HTTP session and a stub app."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox import Sandbox, start

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "examples"


def load_example(name: str) -> dict[str, Any]:
    """Payload of a shared example file (skips the test when ../shared is absent)."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {name} not available")
    return json.loads(path.read_text(encoding="utf-8"))["payload"]


@pytest.fixture
def example() -> Any:
    """Loader of ../shared/fixtures/examples payloads (test modules never import conftest)."""
    return load_example


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Receiver:
    """A tiny stand-in for the app: records every request and answers 200 "ok"."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        entry = {
            "method": request.method,
            "path": request.path,
            "args": list(request.args.items(multi=True)),
            "form": list(request.form.items(multi=True)),
            "content_type": request.content_type,
        }
        with self.lock:
            self.requests.append(entry)
        return Response("ok", status=self.status)(environ, start_response)

    def take(self) -> list[dict[str, Any]]:
        """Requests received so far (and forget them)."""
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def creds() -> dict[str, str]:
    """Client credentials for every provider, random per run."""
    return {
        "BITRIX24_CLIENT_ID": "local." + secrets.token_hex(6),
        "BITRIX24_CLIENT_SECRET": secrets.token_hex(16),
        "YANDEX_CLIENT_ID": secrets.token_hex(16),
        "YANDEX_CLIENT_SECRET": secrets.token_hex(16),
        "AMOCRM_CLIENT_ID": "c0ffee00-" + secrets.token_hex(4),
        "AMOCRM_CLIENT_SECRET": secrets.token_hex(32),
        "AMOCRM_REDIRECT_URI": "http://127.0.0.1:9/amocrm/callback",
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The stub app."""
    stub = Receiver()
    yield stub
    stub.stop()


@pytest.fixture
def sandbox(creds: dict[str, str], receiver: Receiver) -> Iterator[Sandbox]:
    """A fresh sandbox with two portals whose app_url is the stub receiver."""
    box = start(port=0, app_url=receiver.url, portals=2, env=creds)
    yield box
    box.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """HTTP session closed after the test."""
    with requests.Session() as session:
        yield session


class Api:
    """Small helpers over the sandbox HTTP interfaces."""

    def __init__(self, box: Sandbox, http: requests.Session, creds: dict[str, str]):
        self.box, self.http, self.creds = box, http, creds
        self.base = box.base

    def control(self, verb: str, path: str, **kwargs: Any) -> requests.Response:
        """Call /_sandbox/{path}."""
        return self.http.request(verb, f"{self.base}/_sandbox/{path}", **kwargs)

    def mint(self, **body: Any) -> dict[str, Any]:
        """Mint one token (bitrix24 unless provider given)."""
        response = self.control("POST", "oauth/tokens", json=body)
        assert response.status_code == 200, response.text
        return response.json()["tokens"][0]

    def rest_url(self, portal: int = 0) -> str:
        """REST endpoint of portal N (0-based)."""
        return self.box.info["portals"][portal]["rest"]

    def call(self, method: str, token: str, portal: int = 0, **params: Any) -> requests.Response:
        """GET a REST method with auth."""
        return self.http.get(self.rest_url(portal) + method, params={"auth": token, **params})

    def post(self, method: str, token: str, body: dict[str, Any], portal: int = 0) -> requests.Response:
        """POST a REST method with a JSON body."""
        return self.http.post(self.rest_url(portal) + method, json={"auth": token, **body})

    def refresh(self, refresh_token: str, **extra: Any) -> requests.Response:
        """Bitrix24 refresh with our credentials."""
        params = {
            "grant_type": "refresh_token",
            "client_id": self.creds["BITRIX24_CLIENT_ID"],
            "client_secret": self.creds["BITRIX24_CLIENT_SECRET"],
            "refresh_token": refresh_token,
            **extra,
        }
        return self.http.get(f"{self.base}/oauth/token/", params=params)


@pytest.fixture
def api(sandbox: Sandbox, http: requests.Session, creds: dict[str, str]) -> Api:
    """Helpers bound to the fresh sandbox."""
    return Api(sandbox, http, creds)
