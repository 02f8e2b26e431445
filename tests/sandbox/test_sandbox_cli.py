"""`python -m sandbox` as a subprocess: first stdout line is the JSON endpoint map; SIGTERM stops it."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def _env(creds: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITRIX24_", "YANDEX_", "AMOCRM_"))}
    env.update(creds or {})
    return env


def _first_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "sandbox printed nothing"
    return proc.stdout.readline()


def test_cli_prints_endpoints_and_stops_on_sigterm(creds: dict[str, str]) -> None:
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "--port",
        "0",
        "--app-url",
        "http://127.0.0.1:9",
        "--portals",
        "2",
    ]
    with subprocess.Popen(
        command, cwd=ROOT, env=_env(creds), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            info = json.loads(_first_line(proc))
            assert info["oauth"] == info["base"] and info["app_url"] == "http://127.0.0.1:9"
            assert info["yandex_oauth"] == f"{info['base']}/yandex-oauth"
            assert info["yandex_login"] == f"{info['base']}/yandex-login"
            assert info["amocrm"] == f"{info['base']}/amocrm/{{subdomain}}"
            assert [p["name"] for p in info["portals"]] == ["portal1", "portal2"]
            assert info["portals"][0]["rest"] == f"{info['portals'][0]['base']}/rest/"
            with requests.get(f"{info['base']}/_sandbox/health", timeout=5) as health:
                assert health.json()["ok"] is True
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_cli_requires_bitrix_credentials() -> None:
    command = [sys.executable, "-m", "sandbox", "--port", "0", "--app-url", "http://127.0.0.1:9"]
    done = subprocess.run(command, cwd=ROOT, env=_env(None), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "BITRIX24_CLIENT_ID" in done.stderr and done.stdout == ""
