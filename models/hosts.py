"""Validation of portal hosts and endpoint URLs that come from outside.

A portal host arrives in iframe POSTs (DOMAIN), events (auth[domain]) and OAuth answers
(client_endpoint). Before any URL is built from it, it must be a plain public DNS name: IDN is
turned into punycode, and IP literals (every spelling the C resolver accepts), private ranges, user
info, ports and paths are refused. Loopback hosts (the sandbox) pass only when ALLOW_LOOPBACK_PORTALS
is on. `resolve_public_addresses` is the per-request DNS check that models/http.py connects through.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOOPBACK_NAMES = {"localhost"}


class InvalidHost(ValueError):
    """The host or URL is not acceptable; str(exc) says why."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _inet_aton_accepts(host: str) -> bool:
    """True for every IPv4 spelling the C resolver takes as an address: 0x7f.1, 017.0.0.1, 2130706433…"""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def _split_port(raw: str) -> tuple[str, str | None]:
    if raw.startswith("["):
        end = raw.find("]")
        host, rest = raw[: end + 1], raw[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else None
    if raw.count(":") == 1:
        host, port = raw.split(":")
        return host, port
    return raw, None


def _loopback_host(host: str, port: str | None) -> str | None:
    """Return the normalised loopback host[:port] or None when the host is not loopback."""
    bare = host.strip("[]")
    is_loopback = bare in _LOOPBACK_NAMES
    if not is_loopback and _is_ip(bare):
        is_loopback = ipaddress.ip_address(bare).is_loopback
    if not is_loopback:
        return None
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        raise InvalidHost("bad port")
    return f"{host}:{port}" if port else host


def normalize_host(raw: str | None, *, allow_loopback: bool = False) -> str:
    """Return the canonical portal host (punycode, lower case) or raise InvalidHost."""
    if not raw or not isinstance(raw, str):
        raise InvalidHost("host is empty")
    value = raw.strip().rstrip(".").lower()
    if len(value) > 253:
        raise InvalidHost("host is too long")
    if any(ch in value for ch in "/\\?#@ \t\r\n") or "%" in value:
        raise InvalidHost("host must not contain a scheme, path, query or user info")
    host, port = _split_port(value)
    if allow_loopback:
        loop = _loopback_host(host, port)
        if loop is not None:
            return loop
    if port is not None or host.startswith("["):
        raise InvalidHost("host must not contain a port")
    if _is_ip(host) or _inet_aton_accepts(host):
        raise InvalidHost("IP addresses are not portal hosts")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidHost(f"not a valid host name: {exc}") from exc
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidHost("not a valid host name")
    # Checked again after IDNA: full-width digits map to ASCII ones ("０x7f.１" → "0x7f.1").
    if labels[-1].isdigit() or _inet_aton_accepts(ascii_host):
        raise InvalidHost("IP addresses are not portal hosts")
    if ascii_host in _LOOPBACK_NAMES or ascii_host.endswith(".localhost"):
        raise InvalidHost("loopback hosts are not allowed")
    return ascii_host


def normalize_endpoint(raw: str | None, *, allow_loopback: bool = False) -> str:
    """Validate a REST endpoint URL (https://host/rest/) and return it normalised with a trailing slash."""
    if not raw or not isinstance(raw, str):
        raise InvalidHost("endpoint is empty")
    parts = urlsplit(raw.strip())
    if parts.username or parts.password:
        raise InvalidHost("endpoint must not contain user info")
    if parts.query or parts.fragment:
        raise InvalidHost("endpoint must not contain a query")
    host = normalize_host(parts.netloc, allow_loopback=allow_loopback)
    loopback = _loopback_host(*_split_port(host)) is not None if allow_loopback else False
    if parts.scheme != "https" and not (loopback and parts.scheme == "http"):
        raise InvalidHost("endpoint must use https")
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    return f"{parts.scheme}://{host}{path}"


def endpoint_host(endpoint: str) -> str:
    """The host[:port] part of an already validated endpoint."""
    return urlsplit(endpoint).netloc


def resolve_public(host: str, port: int | None = None, *, allow_loopback: bool = False) -> str:
    """Resolve a portal host once, refuse it unless every address is public, return the one to connect to."""
    return resolve_public_addresses(host, port, allow_loopback=allow_loopback)[0]


def resolve_public_addresses(host: str, port: int | None = None, *, allow_loopback: bool = False) -> list[str]:
    """Resolve a portal host once and return its addresses in the resolver's order, all of them checked.

    Called for every request (models/http.py connects to these very addresses), never cached: a name
    that passed a minute ago may point inside now (DNS rebinding). One internal address among public
    ones refuses the name. Loopback passes only in the sandbox (ALLOW_LOOPBACK_PORTALS).
    """
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise InvalidHost(f"cannot resolve {host}") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise InvalidHost(f"cannot resolve {host}")
    for address in addresses:
        if not _address_allowed(ipaddress.ip_address(address), allow_loopback):
            raise InvalidHost(f"{host} resolves to a non-public address")
    return addresses


def _address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> bool:
    """True for a public unicast address (or loopback when allowed), looking through IPv6 wrappings."""
    if address.version == 6:
        # IPv4 carried inside IPv6 (mapped, 6to4, Teredo) reaches that IPv4 address: judge it instead.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return _address_allowed(embedded, allow_loopback)
        if address.is_site_local:
            return False
    if allow_loopback and address.is_loopback:
        return True
    # is_global alone lets multicast through on Python 3.11.
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def assert_public_address(host: str, *, allow_loopback: bool = False) -> None:
    """Refuse a host whose DNS name resolves to any private, link-local, loopback or reserved address.

    A check only: a later connection resolves again. Requests to portals go through models/http.py,
    which connects to the address it validated.
    """
    resolve_public(host, allow_loopback=allow_loopback)
