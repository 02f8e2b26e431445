"""Parsing of Bitrix24's form posts: PHP bracket keys (`auth[access_token]`, `data[BOT][39][AUTH]…`)."""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Iterable
from urllib.parse import unquote

_KEY_PARTS = re.compile(r"[^\[\]]+")
MAX_DEPTH = 8
KEEP_ESCAPES = "forms.keep_escapes"


def _keep_escapes(exc: UnicodeDecodeError) -> tuple[str, int]:
    # Bytes that are not UTF-8 stay as their %XX text, as werkzeug's form parser keeps them: a bad token is
    # then refused as a wrong token (403), not as a crash.
    bad = exc.object[exc.start : exc.end]
    return "".join(f"%{b:02X}" for b in bad), exc.end


codecs.register_error(KEEP_ESCAPES, _keep_escapes)


class MalformedForm(ValueError):
    """The form cannot be read as Bitrix24 sends it."""


@functools.lru_cache(maxsize=2048)
def _name(raw: str) -> str:
    # Field names repeat from one event to the next (the same ~90 bracket keys), so each is decoded once.
    return unquote(raw.replace("+", " "), errors=KEEP_ESCAPES)


def parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body as (name, value) pairs, read as werkzeug reads it
    (blank values kept, `+` is a space, undecodable escapes kept as text) but faster on Bitrix24's
    ~90-field events: names are decoded once per process and plain values are not decoded at all.

    Raises UnicodeDecodeError when the body itself is not UTF-8 (werkzeug does the same).
    """
    pairs = []
    for part in body.decode().split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "), errors=KEEP_ESCAPES)
        pairs.append((_name(name), value))
    return pairs


@functools.lru_cache(maxsize=2048)
def _key_parts(raw_key: str) -> tuple[str, ...]:
    return tuple(_KEY_PARTS.findall(raw_key))


def unflatten(items: Iterable[tuple[str, str]]) -> dict:
    """Turn flat bracket keys into nested dicts: `a[b][c]=v` → {"a": {"b": {"c": "v"}}}.

    The first value of a key wins on repeats; a key used both as a value and as a container is
    malformed (it would otherwise silently lose data).
    """
    out: dict = {}
    for raw_key, value in items:
        parts = _key_parts(raw_key)
        if not parts:
            continue
        if len(parts) > MAX_DEPTH:
            raise MalformedForm(f"key {raw_key[:60]!r} is nested too deeply")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MalformedForm(f"key {raw_key[:60]!r} mixes a value and a group")
            node = child
        leaf = parts[-1]
        if isinstance(node.get(leaf), dict):
            raise MalformedForm(f"key {raw_key[:60]!r} mixes a value and a group")
        node.setdefault(leaf, value)
    return out


def text(mapping: dict, key: str, max_len: int = 512) -> str:
    """A string field or '' (non-strings and over-long values count as absent)."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, str) or len(value) > max_len:
        return ""
    return value.strip()


def integer(mapping: dict, key: str, default: int | None = None) -> int | None:
    """An integer field sent as a string, or the default."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default
