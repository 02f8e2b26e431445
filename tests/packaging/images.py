"""Read the packaging files the way Docker and Compose do: the Dockerfile's ENV and CMD, .dockerignore rules,
docker-compose.yml's variables. Shared by the packaging tests and the fake `docker` they put on PATH."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from config import ROOT

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        pending += line
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def image_env() -> dict[str, str]:
    """The image's ENV settings."""
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def image_cmd() -> list[str]:
    """The image's CMD in exec form."""
    cmds = [rest for word, rest in dockerfile_instructions() if word == "CMD"]
    assert len(cmds) == 1, cmds
    return json.loads(cmds[0])


def compose() -> dict:
    """docker-compose.yml, parsed."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def compose_interpolated() -> set[str]:
    """Every ${VAR} compose substitutes (comments ignored: the parsed document, dumped back)."""
    return set(INTERPOLATION.findall(yaml.safe_dump(compose())))


def env_example_names() -> set[str]:
    """Names .env.example sets (NAME=...)."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def deployment_names() -> set[str]:
    """The names of .env.example's deployment section: read by gunicorn.conf.py, compose and deploy.sh only."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    section = text[text.index("# --- deployment:") :]
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", section, re.MULTILINE))


def dockerignore_rules() -> list[tuple[bool, str]]:
    """(excluded?, pattern) per .dockerignore line, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((not negated, line.lstrip("!").strip("/")))
    return rules


def _regex(pattern: str) -> re.Pattern:
    # Go's filepath.Match (`*` and `?` stop at "/") plus Docker's `**` (any number of directories).
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", pattern):
        if token.startswith("**"):
            out += "(?:.*/)?" if token.endswith("/") else ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += re.escape(token)
    return re.compile(out + r"\Z")


def _matches(pattern: str, path: str) -> bool:
    # A pattern that matches a directory excludes everything under it.
    parts = path.split("/")
    regex = _regex(pattern)
    return any(regex.match("/".join(parts[:end])) for end in range(1, len(parts) + 1))


def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the build context) out of the context; the last rule wins."""
    excluded = False
    for exclude, pattern in dockerignore_rules():
        if _matches(pattern, path):
            excluded = exclude
    return excluded
