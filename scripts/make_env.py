"""Write a development `.env` with fresh random secrets, print production secrets, or fill the missing
secrets of an existing `.env` (`deploy.sh --generate-secrets`).

Secrets are generated, never written into code: `make demo` calls this once to create `.env`.
Standard library only, so it runs on a Docker host's bare python3 (a Fernet key is 32 random bytes,
url-safe base64: exactly what `cryptography.fernet.Fernet.generate_key()` returns).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The secrets the app cannot run without and that nobody else hands out (BITRIX24_CLIENT_SECRET comes from
# the Bitrix24 app form), with their generators.
GENERATED = {
    "SESSION_SIGNING_KEY": lambda: secrets.token_urlsafe(32),
    "TOKEN_ENCRYPTION_KEY": lambda: fernet_key(),
    "ADMIN_API_TOKEN": lambda: secrets.token_urlsafe(32),
    "CRON_TOKEN": lambda: secrets.token_urlsafe(32),
}
# The old tools' names of those settings (a subset of config.ALIASES; a test keeps the two in step): a value
# under the old name counts, so a second, different value is never added under the new one.
OLD_NAMES = {"SESSION_SIGNING_KEY": "SECRET_KEY", "ADMIN_API_TOKEN": "API_SECRET_TOKEN"}
# docker-compose.yml's optional PostgreSQL service (profile "postgres").
PG_URL = "postgresql://telemost:{password}@postgres:5432/telemost"
LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def fernet_key() -> str:
    """A fresh Fernet key (what TOKEN_ENCRYPTION_KEY holds)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def secret_lines() -> list[str]:
    """The secret settings with new random values."""
    return [f"{name}={make()}" for name, make in GENERATED.items()]


def _value(raw: str) -> str:
    """A value as python-dotenv reads it: quotes removed, or an inline comment cut off."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def read_env(lines: list[str]) -> dict[str, tuple[int, str]]:
    """Each name's last line number and value (the last assignment wins, as in python-dotenv)."""
    out: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(lines):
        match = LINE.match(line)
        if match:
            out[match.group(1)] = (number, _value(match.group(2)))
    return out


def fill_missing(path: Path) -> list[str]:
    """Give every missing or empty secret of the `.env` at `path` a fresh value, in place; never touch a value
    that is set. Returns the names written (never the values)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    current = read_env(lines)

    def is_set(name: str) -> bool:
        return bool(current.get(name, (0, ""))[1])

    new: dict[str, str] = {}
    for name, make in GENERATED.items():
        if not is_set(name) and not is_set(OLD_NAMES.get(name, "")):
            new[name] = make()
    if "postgres" in current.get("COMPOSE_PROFILES", (0, ""))[1].split(","):
        password = current.get("POSTGRES_PASSWORD", (0, ""))[1]
        if not password:
            password = new["POSTGRES_PASSWORD"] = secrets.token_urlsafe(32)
        if not is_set("DATABASE_URL"):
            new["DATABASE_URL"] = PG_URL.format(password=password)
    for name, value in new.items():
        if name in current:  # an empty `NAME=` line, e.g. from .env.example: filled where it stands
            lines[current[name][0]] = f"{name}={value}"
        else:
            lines.append(f"{name}={value}")
    if new:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)
    return list(new)


def main(argv: list[str]) -> int:
    """Entry point."""
    if "--print-production" in argv:
        print("\n".join(secret_lines()))
        return 0
    if len(argv) == 3 and argv[1] == "--fill":
        target = Path(argv[2])
        if not target.is_file():
            print(f"{target} does not exist", file=sys.stderr)
            return 1
        written = fill_missing(target)
        for name in written:
            print(f"generated {name}")
        if not written:
            print(f"{target.name}: every generated secret is already set; nothing changed")
        return 0
    target = ROOT / (argv[1] if len(argv) > 1 else ".env")
    if target.exists():
        print(f"{target.name} exists; leaving it alone")
        return 0
    lines = [
        "# Development settings written by scripts/make_env.py (see .env.example for every setting).",
        "APP_ENV=development",
        "ALLOW_LOOPBACK_PORTALS=1",
        "DATABASE_PATH=data/dev.db",
        *secret_lines(),
        # The sandbox and the app read the same local app credentials.
        f"BITRIX24_CLIENT_ID=local.{secrets.token_hex(6)}.{secrets.token_hex(4)}",
        f"BITRIX24_CLIENT_SECRET={secrets.token_urlsafe(32)}",
        f"YANDEX_CLIENT_ID={secrets.token_hex(16)}",
        f"YANDEX_CLIENT_SECRET={secrets.token_hex(16)}",
        f"AMOCRM_CLIENT_ID={secrets.token_hex(16)}",
        f"AMOCRM_CLIENT_SECRET={secrets.token_hex(32)}",
    ]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target.chmod(0o600)
    print(f"wrote {target.name} with fresh development secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
