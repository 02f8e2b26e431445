"""PHP-style parameters: bracket keys in and out, request parameter merging, secret stripping."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Request

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")
SECRET_KEYS = {
    "auth",
    "access_token",
    "refresh_token",
    "client_secret",
    "application_token",
    "auth_id",
    "refresh_id",
}


def _split_key(key: str) -> list[str]:
    match = _KEY_RE.match(key)
    if not match:
        return [key]
    return [match.group(1), *_PART_RE.findall(match.group(2))]


def _next_index(node: dict[str, Any]) -> str:
    numbers = [int(k) for k in node if k.isdigit()]
    return str(max(numbers) + 1 if numbers else 0)


def _listify(node: Any) -> Any:
    # PHP arrays with keys 0..n-1 are lists; anything else stays a mapping.
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        keys = sorted(converted, key=int)
        if [int(k) for k in keys] == list(range(len(keys))):
            return [converted[k] for k in keys]
    return converted


def parse_pairs(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Turn `a[b][]=x` style pairs into nested dicts/lists the way PHP fills $_REQUEST."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _split_key(key)
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = _next_index(node)
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root)


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested data to bracket-key form pairs, every value a string (as Bitrix24 posts events)."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs.extend(flatten(value, name))
        elif isinstance(value, list | tuple):
            pairs.extend(flatten({str(i): v for i, v in enumerate(value)}, name))
        else:
            pairs.append((name, stringify(value)))
    return pairs


def stringify(value: Any) -> str:
    """Scalar to the string PHP would post (booleans as Y/N are up to the caller)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def request_params(request: Request) -> dict[str, Any]:
    """Merge query string, urlencoded/multipart form and JSON body (later sources win)."""
    params = parse_pairs(request.args.items(multi=True))
    if request.form:
        params.update(parse_pairs(request.form.items(multi=True)))
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    return params


def strip_secrets(value: Any) -> Any:
    """Copy of value without token/secret keys, at any depth."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def ci_get(params: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """Case-insensitive lookup of the first present name (Bitrix24 accepts FILTER and filter alike)."""
    lowered = {str(k).lower(): v for k, v in params.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return default


def truthy(value: Any) -> bool:
    """Bitrix24-style boolean: true/Y/1/yes."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"1", "y", "yes", "true", "on"}


def as_list(value: Any) -> list[Any]:
    """Scalar, list, or PHP-style dict to a list."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]
