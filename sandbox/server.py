"""Runs the fake servers: one base server (OAuth, Yandex, amoCRM, control API) and one server per portal."""

from __future__ import annotations

import io
import os
import selectors
import socket
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug import serving as werkzeug_serving
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import amocrm, control, telemost, yandex
from .bitrix24 import oauth as bitrix_oauth
from .bitrix24.portal import create_portal_app, new_flask
from .state import Portal, SandboxError, State

_keepalive = threading.local()


class _NoDrainSelector:
    """Stands in for the selector werkzeug uses to drain unread input after a response.

    werkzeug's dev server closes every connection and, before that, reads whatever else the client
    sent. On a keep-alive connection that would swallow the client's next request, so the handler
    below reads each body up front and turns the drain off for its own requests.
    """

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector() if not getattr(_keepalive, "active", False) else None

    def register(self, *args: Any, **kwargs: Any) -> Any:
        """Register with the real selector, if any."""
        return self._real.register(*args, **kwargs) if self._real else None

    def select(self, *args: Any, **kwargs: Any) -> list:
        """Nothing to drain on keep-alive connections."""
        return self._real.select(*args, **kwargs) if self._real else []

    def close(self) -> None:
        """Close the real selector, if any."""
        if self._real:
            self._real.close()


class _SelectorsShim:
    """What werkzeug.serving sees as its `selectors` module."""

    DefaultSelector = _NoDrainSelector
    EVENT_READ = selectors.EVENT_READ


werkzeug_serving.selectors = _SelectorsShim  # type: ignore[attr-defined]


class _KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 with keep-alive, as the real OAuth servers and portals answer.

    Clients then reuse connections from their pools, as they do in production; without it every
    request pays for a new TCP connection, which dominated the refresh benchmark.
    """

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Disable Nagle: headers and body go out in separate writes, and on a kept-alive connection
        the body would otherwise wait for the client's delayed ACK (about 40 ms)."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def make_environ(self) -> dict[str, Any]:
        """Read the whole body first so the next request on the connection starts in the right place."""
        environ = super().make_environ()
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or (length is not None and not length.isdigit()):
            self.close_connection = True
            return environ
        body = self.rfile.read(int(length)) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        """Drop werkzeug's unconditional `Connection: close` unless the connection must close."""
        if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
            return
        super().send_header(keyword, value)

    def run_wsgi(self) -> None:
        """Serve one request with the input drain turned off."""
        _keepalive.active = True
        try:
            super().run_wsgi()
        finally:
            _keepalive.active = False


class _QuietHandler(_KeepAliveHandler):
    """Request handler that skips the per-request access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access logging is off unless the sandbox runs verbose."""


class ServerThread:
    """A werkzeug threaded server running serve_forever in a daemon thread."""

    def __init__(self, host: str, port: int, app: Flask, name: str, verbose: bool = False):
        handler = _KeepAliveHandler if verbose else _QuietHandler
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{name}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        """Bound port (useful when asked for port 0)."""
        return int(self.server.server_port)

    def start(self) -> None:
        """Start serving."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def create_base_app(state: State) -> Flask:
    """Base server: Bitrix24 OAuth, Yandex OAuth/login, amoCRM and the control API."""
    app = new_flask("sandbox-base", state)
    for blueprint in (bitrix_oauth.bp, yandex.bp, amocrm.bp, control.bp, telemost.bp):
        app.register_blueprint(blueprint)
    return app


class Sandbox:
    """A running sandbox; `info` is the same dict the CLI prints, `stop()` shuts everything down."""

    def __init__(self, state: State, host: str, verbose: bool):
        self.state = state
        self.host = host
        self.verbose = verbose
        self._servers: list[ServerThread] = []
        self._lock = threading.Lock()
        self.base_server: ServerThread | None = None

    def start_base(self, port: int) -> None:
        """Bind and start the base server."""
        server = ServerThread(self.host, port, create_base_app(self.state), "base", self.verbose)
        self.state.base_url = f"http://{self.host}:{server.port}"
        self.base_server = server
        self._servers.append(server)
        server.start()

    def add_portal(self, name: str | None = None) -> Portal:
        """Create a portal served on its own new port."""
        with self._lock:
            name = name or self.state.next_portal_name()
            # The port is only known once bound, and the portal's domain depends on it: bind first.
            placeholder = Portal(name=name, port=0, host=self.host)
            server = ServerThread(self.host, 0, create_portal_app(self.state, placeholder), name, self.verbose)
            placeholder.port = server.port
            with self.state.lock:
                self.state.portals[name] = placeholder
            self._servers.append(server)
            server.start()
            return placeholder

    @property
    def info(self) -> dict[str, Any]:
        """Endpoints for the app's configuration and the tests."""
        base = self.state.base_url
        with self.state.lock:
            portals = [
                {"name": p.name, "domain": p.domain, "member_id": p.member_id, "rest": p.rest, "base": p.base}
                for p in self.state.portals.values()
            ]
        return {
            "base": base,
            "oauth": base,
            "yandex_oauth": f"{base}/yandex-oauth",
            "yandex_login": f"{base}/yandex-login",
            "amocrm": f"{base}/amocrm/{{subdomain}}",
            "telemost": f"{base}{telemost.PREFIX}",
            "control": f"{base}/_sandbox",
            "portals": portals,
            "app_url": self.state.app_url,
        }

    @property
    def base(self) -> str:
        """Base server URL."""
        return self.state.base_url

    def portal(self, name: str = "portal1") -> Portal:
        """Portal state object by name."""
        portal = self.state.portal(name)
        if portal is None:
            raise KeyError(name)
        return portal

    def stop(self) -> None:
        """Shut every server down (sleeping fault handlers wake up at once)."""
        self.state.stop_event.set()
        with self._lock:
            servers, self._servers = self._servers, []
        # Stopped in parallel: each shutdown waits up to one poll interval for its loop.
        stoppers = [threading.Thread(target=server.stop) for server in servers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    port: int = 0,
    app_url: str = "http://127.0.0.1:5000",
    portals: int = 1,
    access_ttl: float = 3600,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> Sandbox:
    """Start a sandbox in this process (env defaults to os.environ for the client credentials)."""
    if portals < 0:
        raise SandboxError("portals must be >= 0")
    state = State(app_url, os.environ if env is None else env, host=host, access_ttl=access_ttl)
    sandbox = Sandbox(state, host, verbose)
    state.spawn_portal = sandbox.add_portal
    try:
        sandbox.start_base(port)
        for _ in range(portals):
            sandbox.add_portal()
    except BaseException:
        sandbox.stop()
        raise
    return sandbox
