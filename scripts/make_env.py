"""Write a development `.env` with fresh random secrets, or print production secrets.

Secrets are generated, never written into code: `make demo` calls this once to create `.env`.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def secret_lines() -> list[str]:
    """The secret settings with new random values."""
    return [
        f"SESSION_SIGNING_KEY={secrets.token_urlsafe(32)}",
        f"TOKEN_ENCRYPTION_KEY={Fernet.generate_key().decode()}",
        f"ADMIN_API_TOKEN={secrets.token_urlsafe(32)}",
        f"CRON_TOKEN={secrets.token_urlsafe(32)}",
    ]


def main(argv: list[str]) -> int:
    """Entry point."""
    if "--print-production" in argv:
        print("\n".join(secret_lines()))
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
