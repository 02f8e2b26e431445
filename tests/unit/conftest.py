"""Fixtures for the transport tests: a DNS stand-in and a local portal server (HTTP or HTTPS with SNI)."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class FakeDns:
    """socket.getaddrinfo for chosen names: each name answers from its list of scripted answers in turn.

    Names not scripted, and IP literals, go to the real resolver. `lookups` counts queries per name.
    """

    def __init__(self, real):
        self.real = real
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = {}

    def script(self, name: str, *answers: list[str]) -> None:
        """Answer the n-th query for `name` with answers[n] (the last one repeats)."""
        self.answers[name] = [list(a) for a in answers]

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # socket's signature
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        n = self.lookups.get(name, 0)
        self.lookups[name] = n + 1
        script = self.answers[name]
        out = []
        for address in script[min(n, len(script) - 1)]:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port or 0, 0, 0) if fam == socket.AF_INET6 else (address, port or 0)
            out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out


@pytest.fixture
def fake_dns(monkeypatch):
    """Scriptable DNS answers for test names, patched where every resolver in the process looks."""
    dns = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


class PortalServer:
    """A local stand-in portal that answers every POST with a REST result and records what it saw."""

    def __init__(self, tls_name: str | None, tmp_path):
        self.requests: list[dict] = []
        self.server_names: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append(
                    {"path": self.path, "host": self.headers.get("Host"), "body": self.rfile.read(length)}
                )
                body = json.dumps({"result": {"ID": "1"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.ca_file = None
        if tls_name:
            cert_file, key_file = _self_signed(tls_name, tmp_path)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
            context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.ca_file = cert_file
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Shut the server down."""
        self.httpd.shutdown()
        self.httpd.server_close()


def _self_signed(name: str, tmp_path) -> tuple[str, str]:
    """A certificate for `name` only (no IP in it), written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


@pytest.fixture
def portal_server(tmp_path):
    """A plain-HTTP portal stand-in on 127.0.0.1."""
    server = PortalServer(None, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def tls_portal_server(tmp_path):
    """An HTTPS portal stand-in on 127.0.0.1 whose certificate names portal.test only; records SNI."""
    server = PortalServer("portal.test", tmp_path)
    yield server
    server.stop()


@pytest.fixture
def strict_services(tmp_path):
    """The app's wired models as in production: loopback portals refused."""
    from app import create_app
    from tests.conftest import make_config

    application = create_app(make_config(tmp_path, ALLOW_LOOPBACK_PORTALS=False))
    yield application.extensions["services"]
    application.extensions["db"].dispose()
