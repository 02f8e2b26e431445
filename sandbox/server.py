"""Runs the fake servers: one base server (OAuth, Yandex, amoCRM, control API) and one server per portal."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import amocrm, bitrix_oauth, control, yandex
from .portal import create_portal_app, new_flask
from .state import Portal, SandboxError, State


class _QuietHandler(WSGIRequestHandler):
    """Request handler that skips the per-request access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access logging is off unless the sandbox runs verbose."""


class ServerThread:
    """A werkzeug threaded server running serve_forever in a daemon thread."""

    def __init__(self, host: str, port: int, app: Flask, name: str, verbose: bool = False):
        handler = WSGIRequestHandler if verbose else _QuietHandler
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
    for blueprint in (bitrix_oauth.bp, yandex.bp, amocrm.bp, control.bp):
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
            server = ServerThread(
                self.host, 0, create_portal_app(self.state, placeholder), name, self.verbose
            )
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
