"""Parsing of Bitrix24's form posts: PHP bracket keys (`auth[access_token]`, `data[BOT][39][AUTH]…`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_KEY_PARTS = re.compile(r"[^\[\]]+")
MAX_DEPTH = 8


class MalformedForm(ValueError):
    """The form cannot be read as Bitrix24 sends it."""


def unflatten(items: Iterable[tuple[str, str]]) -> dict:
    """Turn flat bracket keys into nested dicts: `a[b][c]=v` → {"a": {"b": {"c": "v"}}}.

    The first value of a key wins on repeats; a key used both as a value and as a container is
    malformed (it would otherwise silently lose data).
    """
    out: dict = {}
    for raw_key, value in items:
        parts = _KEY_PARTS.findall(raw_key)
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
