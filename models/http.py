"""The HTTP transport for requests to portal hosts: resolve once, validate, connect to that address.

A portal host comes from outside, and its DNS answer can change between a check and the connect (DNS
rebinding): checking a name and then letting `requests` resolve it again lets a portal point our
REST calls at an internal address. `PinnedAdapter` resolves the host once per request
(`models.hosts.resolve_public_addresses`: every address must be public, loopback only in the
sandbox), then connects to those very addresses (the next one only when the previous took no
connection) while the request keeps the portal's name in the Host header, the TLS server name (SNI)
and the certificate check. Nothing is cached from one request to the next.
"""

from __future__ import annotations

import http.cookiejar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from models.hosts import InvalidHost, resolve_public_addresses

# The address a request was validated for, carried on the PreparedRequest from send() to the pool key.
_PINNED = "_pinned_address"


class AddressRefused(InvalidHost):
    """The portal host is not a public address (or cannot be resolved); nothing was sent."""


class PinnedAdapter(HTTPAdapter):
    """A requests adapter that connects to the address it validated for this request, by name for TLS."""

    def __init__(self, *, allow_loopback: bool = False, **kwargs):
        self.allow_loopback = allow_loopback
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        """Resolve and validate the host, then send to a validated address; raises AddressRefused."""
        parts = urlsplit(request.url)
        if not parts.hostname:
            raise AddressRefused("the URL has no host")
        try:
            addresses = resolve_public_addresses(parts.hostname, parts.port, allow_loopback=self.allow_loopback)
        except InvalidHost as exc:
            raise AddressRefused(str(exc)) from None
        # The URL's authority, as requests would have sent it (user info is never part of it).
        request.headers["Host"] = parts.netloc.rpartition("@")[2]
        for n, address in enumerate(addresses, start=1):
            setattr(request, _PINNED, address)
            try:
                # A proxy would resolve the name again on its side, undoing the pin.
                return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)
            except requests.ConnectionError as exc:
                # Like a plain connect, try the name's next (checked) address when this one took no
                # connection; once connected, a request may have been sent and is never repeated.
                if n == len(addresses) or not _not_connected(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        """Pool by the validated address; TLS still speaks to, and checks the certificate of, the name."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        address = getattr(request, _PINNED, None)
        if address is None:  # only send() above reaches here; refuse rather than resolve unchecked
            raise AddressRefused("request was not resolved by the pinned transport")
        name = host_params["host"]
        host_params["host"] = address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def _not_connected(exc: requests.ConnectionError) -> bool:
    """True when the error happened before a connection existed (so nothing was sent)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def portal_session(pool_size: int, *, allow_loopback: bool = False) -> requests.Session:
    """A session for portal REST calls: every request goes through PinnedAdapter, no cookies, no proxies."""
    session = requests.Session()
    adapter = PinnedAdapter(allow_loopback=allow_loopback, pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "b24-telemost/1.0"
    # One session serves every portal: an answer from one portal must not set cookies for the next.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.trust_env = False
    return session
