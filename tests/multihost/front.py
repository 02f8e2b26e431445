"""A round-robin reverse proxy on loopback: the test's stand-in for nginx's `upstream` in front of two hosts.

Each request goes to the next host in turn (nginx's default), or, for the paths in `mirror`, to every host
at the same instant (one Bitrix24 event reaching two hosts at once); the first host's answer is returned.
Every upstream answer is recorded in `log` so a test can see which host served what.
"""

from __future__ import annotations

import http.client
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), plus the ones we recompute.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass(frozen=True)
class Hit:
    """One request as an upstream host answered it."""

    host: int
    method: str
    path: str
    status: int


class Front:
    """The proxy: `Front(["http://127.0.0.1:A", "http://127.0.0.1:B"])`, `.url`, `.stop()`."""

    def __init__(self, upstreams: list[str] | None = None, *, mirror: tuple[str, ...] = ()):
        self.upstreams: list[str] = list(upstreams or [])
        self.mirror = mirror
        self.log: list[Hit] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="front-mirror")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="front", daemon=True)
        self._thread.start()

    def hits(self, path_prefix: str) -> list[Hit]:
        """The recorded upstream answers for paths starting with `path_prefix`."""
        with self._lock:
            return [h for h in self.log if h.path.startswith(path_prefix)]

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _targets(self, path: str) -> list[int]:
        if self.mirror and path.startswith(self.mirror):
            return list(range(len(self.upstreams)))
        return [next(self._turn) % len(self.upstreams)]

    def _forward(self, index: int, method: str, path: str, headers: dict, body: bytes | None):
        host_port = self.upstreams[index].removeprefix("http://")
        conn = http.client.HTTPConnection(host_port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            answer = (response.status, response.getheaders(), response.read())
        finally:
            conn.close()
        with self._lock:
            self.log.append(Hit(index, method, path, answer[0]))
        return answer

    def _handler(self):
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the hosts' own access logs are enough
                pass

            def _proxy(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["X-Forwarded-For"] = self.client_address[0]
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                futures = [
                    front._pool.submit(front._forward, i, self.command, self.path, headers, body)
                    for i in front._targets(self.path)
                ]
                try:
                    status, upstream_headers, data = [f.result() for f in futures][0]
                except OSError:
                    status, upstream_headers, data = 502, [("Content-Type", "text/plain")], b"bad gateway"
                self.send_response_only(status)
                for name, value in upstream_headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

        return Handler
