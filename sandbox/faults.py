"""Injected faults (latency, error statuses, hung and dropped connections) for the provider endpoints."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from flask import Response, current_app, jsonify, request

SERVERS = ("oauth", "portal", "yandex", "amocrm", "telemost", "all")
MODES = ("latency", "5xx", "429", "503", "timeout", "drop_after_rotate")
TERMINAL = {"5xx", "429", "503", "timeout"}
DROP_KEY = "sandbox.drop_connection"


@dataclass
class Fault:
    id: int
    server: str
    mode: str
    value: Any
    count: int | None
    portal: str | None = None
    hits: int = 0

    def public(self) -> dict[str, Any]:
        """JSON view for GET /_sandbox/faults."""
        return {
            "id": self.id,
            "server": self.server,
            "mode": self.mode,
            "value": self.value,
            "count": self.count,
            "portal": self.portal,
            "hits": self.hits,
        }


class FaultRegistry:
    """Ordered list of active faults; counts are consumed as matching requests arrive."""

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self._faults: list[Fault] = []
        self._next = 0

    def add(self, spec: dict[str, Any]) -> Fault:
        """Validate and append a fault; raises ValueError with a readable message."""
        server = spec.get("server", "all")
        mode = spec.get("mode")
        if server not in SERVERS:
            raise ValueError(f"server must be one of {', '.join(SERVERS)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ValueError("count must be a positive integer or null")
        value = spec.get("value")
        if mode == "latency":
            value = float(value or 0)
        elif mode == "timeout":
            value = float(30 if value is None else value)
        elif mode == "5xx":
            value = int(value or 500)
            if not 500 <= value <= 599:
                raise ValueError("5xx value must be a status between 500 and 599")
        with self.lock:
            self._next += 1
            fault = Fault(self._next, server, mode, value, count, spec.get("portal"))
            self._faults.append(fault)
            return fault

    def list(self) -> list[dict[str, Any]]:
        """Active faults in application order."""
        with self.lock:
            return [f.public() for f in self._faults]

    def clear(self) -> int:
        """Remove all faults; returns how many were active."""
        with self.lock:
            n = len(self._faults)
            self._faults.clear()
            return n

    def take(self, server: str, portal: str | None, token_endpoint: bool) -> list[Fault]:
        """Faults that apply to this request, in order, consuming their counts (stops at a terminal one)."""
        chosen: list[Fault] = []
        with self.lock:
            for fault in list(self._faults):
                if fault.server not in (server, "all"):
                    continue
                if fault.portal and fault.portal != portal:
                    continue
                if fault.mode == "drop_after_rotate" and not token_endpoint:
                    continue
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                chosen.append(fault)
                if fault.mode in TERMINAL:
                    break
        return chosen


def _error_body(server: str, status: int) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if server in ("oauth", "portal"):
        if status in (429, 503):
            return {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        return {"error": "INTERNAL_SERVER_ERROR", "error_description": f"{phrase} (sandbox fault)"}
    if server == "amocrm":
        return {
            "title": phrase,
            "type": f"https://httpstatus.es/{status}",
            "status": status,
            "detail": "Sandbox fault",
        }
    if server == "yandex":
        code = {429: "too_many_requests", 503: "temporarily_unavailable"}.get(status, "server_error")
        return {"error": code, "error_description": f"{phrase} (sandbox fault)"}
    if server == "telemost":
        code = {429: "TooManyRequests"}.get(status, "InternalServerError")
        return {"error": code, "description": f"{phrase} (sandbox fault)", "message": phrase, "details": {}}
    return {"error": phrase, "description": "Sandbox fault"}


def apply_faults(server: str, *, token_endpoint: bool = False) -> Response | None:
    """Run the faults matching this request; a returned response replaces the real answer."""
    state = current_app.extensions["sandbox"]
    portal = current_app.extensions.get("sandbox_portal")
    for fault in state.faults.take(server, portal, token_endpoint):
        if fault.mode == "latency":
            # Waiting on the stop event keeps shutdown quick even with long latencies configured.
            state.stop_event.wait(fault.value)
        elif fault.mode == "timeout":
            state.stop_event.wait(fault.value)
            request.environ[DROP_KEY] = True
            return Response(status=504)  # never sent: the middleware drops the connection
        elif fault.mode == "drop_after_rotate":
            request.environ[DROP_KEY] = True
        else:
            status = fault.value if fault.mode == "5xx" else int(fault.mode)
            response = jsonify(_error_body(server, status))
            response.status_code = status
            if server == "amocrm":
                response.mimetype = "application/problem+json"
            return response
    return None


def faulty(server: str, *, token_endpoint: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: subject a provider endpoint to the fault registry."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            injected = apply_faults(server, token_endpoint=token_endpoint)
            if injected is not None:
                return injected
            return view(*args, **kwargs)

        return wrapper

    return decorate


class DropConnectionMiddleware:
    """WSGI wrapper that closes the socket without an answer when a fault asked for it.

    Raising a ConnectionError out of the WSGI app is what werkzeug's dev server treats as a dropped
    client connection: it stops quietly, and since the socket is already shut down the client sees
    the connection close with no response at all.
    """

    def __init__(self, wsgi_app: Callable[..., Any]):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve the request, then drop the connection if flagged."""
        result = self.wsgi_app(environ, start_response)
        if not environ.get(DROP_KEY):
            return result
        if hasattr(result, "close"):
            result.close()
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("sandbox fault: connection dropped without a response")
