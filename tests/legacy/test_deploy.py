"""deploy.sh --dry-run behind plain HTTP on an IDN host, with --duckdns; the DuckDNS update script."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config import ROOT

TOKEN = "0c8a1b2e-3f4d-4e5f-9a6b-7c8d9e0f1a2b"


@pytest.fixture
def app_dir(tmp_path) -> Path:
    """A checkout-looking directory with a production .env written with the old tools' names."""
    (tmp_path / "app.py").write_text("")
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / ".env").write_text(
        "\n".join(
            [
                "FLASK_ENV=production",
                "PUBLIC_URL=http://телемост.рф/app",
                f"SECRET_KEY={secrets.token_urlsafe(40)}",
                f"API_SECRET_TOKEN={secrets.token_urlsafe(40)}",
                f"CRON_TOKEN={secrets.token_urlsafe(40)}",
                "BITRIX24_CLIENT_ID=local.abc.def",
                f"BITRIX24_CLIENT_SECRET={secrets.token_urlsafe(40)}",
                f"TOKEN_ENCRYPTION_KEY={Fernet.generate_key().decode()}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    token = tmp_path / "duckdns.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return tmp_path


def deploy(app_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "deploy.sh"), "--dry-run", "--app-dir", str(app_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plain_http_idn_with_duckdns(app_dir):
    result = deploy(app_dir, "--duckdns", "MyApp", "--duckdns-token-file", str(app_dir / "duckdns.token"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    owner = Path(app_dir / "duckdns.token").owner()
    assert (
        f"    */5 * * * * {owner} /bin/sh {app_dir}/scripts/duckdns_update.sh myapp {app_dir}/duckdns.token "
        "2>&1 | logger -t telemost-app-duckdns"
    ) in out.splitlines()
    assert "      server_name xn--e1aarfksbg.xn--p1ai;  # телемост.рф" in out.splitlines()
    assert out.splitlines()[-1] == "The app: http://телемост.рф/app"
    # The Bitrix24 form's URLs (the same function as deploy.sh --docker), in punycode for Bitrix24.
    assert [line for line in out.splitlines() if line.startswith("  ") and "http://xn--" in line] == [
        "  Your handler path:           http://xn--e1aarfksbg.xn--p1ai/app/",
        "  Initial installation path:   http://xn--e1aarfksbg.xn--p1ai/app/install",
        "  OAuth redirect URI:          http://xn--e1aarfksbg.xn--p1ai/app/auth/bitrix24/callback",
    ]
    assert "  Assign permissions (scopes): user, calendar, im, imbot, imopenlines, placement, crm" in out.splitlines()
    # The unit runs the production settings file, like the image and the tests.
    assert f"    ExecStart={app_dir}/.venv/bin/gunicorn --config gunicorn.conf.py app:app --bind 127.0.0.1:8000" in (
        out.splitlines()
    )
    assert "/.venv/bin/flask --app app doctor" in out
    assert "==> PUBLIC_URL is plain http://" in out
    assert TOKEN not in out + result.stderr


def test_token_file_readable_by_others_is_refused(app_dir):
    token = app_dir / "duckdns.token"
    token.chmod(0o644)
    result = deploy(app_dir, "--duckdns", "myapp", "--duckdns-token-file", str(token))
    assert result.returncode == 1
    assert (
        f"error: --duckdns-token-file: {token} has mode 644, others can read the token: chmod 600 it"
        in result.stderr.splitlines()
    )
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--duckdns", "myapp"],
            "error: --duckdns needs --duckdns-token-file FILE (the token is never passed on the command line)",
        ),
        (
            ["--duckdns", "bad_name!"],
            "error: --duckdns needs the subdomain, e.g. --duckdns myapp for myapp.duckdns.org",
        ),
    ],
)
def test_duckdns_options_are_checked(app_dir, args, message):
    result = deploy(app_dir, *args)
    assert result.returncode == 1
    assert message in result.stderr.splitlines()


def test_weak_secret_still_refused_over_plain_http(app_dir):
    env = app_dir / ".env"
    env.write_text(env.read_text(encoding="utf-8") + "CRON_TOKEN=short\n", encoding="utf-8")  # the last one wins
    result = deploy(app_dir)
    assert result.returncode == 1
    assert "error: CRON_TOKEN is shorter than 32 characters" in result.stderr.splitlines()


def test_update_script_passes_the_token_on_stdin_only(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "curl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\nprintf OK\n')
    fake.chmod(0o755)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    result = subprocess.run(
        ["/bin/sh", str(ROOT / "scripts" / "duckdns_update.sh"), "myapp", str(token)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "duckdns myapp: OK\n"
    assert (tmp_path / "argv").read_text() == "-fsS -m 30 -K -\n"
    assert (tmp_path / "stdin").read_text() == (
        f'url = "https://www.duckdns.org/update?domains=myapp&token={TOKEN}&ip="\n'
    )


def test_gunicorn_settings_from_env_reach_the_unit(app_dir):
    env = app_dir / ".env"
    env.write_text(env.read_text(encoding="utf-8") + "GUNICORN_WORKERS=6\nGUNICORN_THREADS=\n", encoding="utf-8")
    result = deploy(app_dir)
    assert result.returncode == 0, result.stderr
    assert "    Environment=PYTHONUNBUFFERED=1 AUTO_MIGRATE=false GUNICORN_WORKERS=6" in result.stdout.splitlines()
    env.write_text(env.read_text(encoding="utf-8") + "GUNICORN_TIMEOUT=60s\n", encoding="utf-8")
    result = deploy(app_dir)
    assert result.returncode == 1
    assert "error: GUNICORN_TIMEOUT must be a positive integer" in result.stderr.splitlines()
