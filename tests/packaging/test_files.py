"""The packaging files read without a Docker engine: Dockerfile, docker-compose.yml, .dockerignore,
gunicorn.conf.py, and `scripts/make_env.py --fill` (deploy.sh --generate-secrets)."""

from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys

import pytest
from gunicorn.config import Config as GunicornConfig

import config
from config import ROOT
from scripts import make_env
from tests.packaging import images

GUNICORN = ["gunicorn", "--config", "gunicorn.conf.py", "app:app"]
# Variables the Python runtime itself reads, set in the image.
RUNTIME_ENV = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"}


def test_image_migrates_once_then_execs_gunicorn_with_the_config_file():
    shell, flag, script = images.image_cmd()
    assert (shell, flag) == ("sh", "-c")
    migrate, start = (shlex.split(part) for part in script.split("&&"))
    assert migrate == ["flask", "--app", "app", "db", "upgrade"]
    assert start == ["exec", *GUNICORN]  # exec: gunicorn is PID 1 and gets docker stop's SIGTERM
    assert not [word for word, _ in images.dockerfile_instructions() if word == "ENTRYPOINT"]


def test_image_layers_user_and_healthcheck():
    steps = images.dockerfile_instructions()
    words = [word for word, _ in steps]
    assert re.fullmatch(r"python:3\.\d+-slim", steps[0][1])
    copies = [rest for word, rest in steps if word == "COPY"]
    assert copies == ["requirements.txt .", ". ."]  # the dependency layer first
    assert words.index("RUN", words.index("COPY")) < words.index("COPY", words.index("COPY") + 1)
    assert ("USER", "app") in steps and words.index("USER") < words.index("CMD")
    (healthcheck,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert "http://127.0.0.1:8000/health'" in healthcheck
    env = images.image_env()
    assert env["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert env["GUNICORN_FORWARDED_ALLOW_IPS"] == "*"
    assert env["AUTO_MIGRATE"] == "false"


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        (".env", True),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        ("data/app.db", True),
        ("logs/access.log", True),
        ("frontend/node_modules/vue/index.js", True),
        ("tests/conftest.py", True),
        (".pytest_cache/v/cache", True),
        ("models/__pycache__/vault.cpython-311.pyc", True),
        ("static/dist/.vite/manifest.json", False),
        ("app.py", False),
        ("gunicorn.conf.py", False),
        ("migrations/env.py", False),
        ("models/logs.py", False),
        ("templates/index.html", False),
        ("requirements.txt", False),
    ],
)
def test_dockerignore(path, ignored):
    assert images.dockerignored(path) is ignored


def test_dockerignore_keeps_every_built_asset():
    built = [p.relative_to(ROOT).as_posix() for p in (ROOT / "static" / "dist").rglob("*") if p.is_file()]
    assert built
    assert [p for p in built if images.dockerignored(p)] == []


def _gunicorn_settings(monkeypatch, **env) -> dict:
    for name in list(os.environ):
        if name.startswith("GUNICORN_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_conf_production_values(monkeypatch):
    settings = _gunicorn_settings(monkeypatch)
    assert (settings["workers"], settings["threads"], settings["worker_class"]) == (4, 2, "gthread")
    assert (settings["timeout"], settings["graceful_timeout"]) == (60, 30)
    assert settings["bind"] == "127.0.0.1:8000"
    assert (settings["accesslog"], settings["errorlog"]) == ("-", "-")
    # The image's environment, and a .env copied from .env.example (every GUNICORN_* name empty).
    image = _gunicorn_settings(monkeypatch, **{k: v for k, v in images.image_env().items() if k.startswith("GUNICORN")})
    assert (image["bind"], image["forwarded_allow_ips"]) == ("0.0.0.0:8000", "*")
    empty = _gunicorn_settings(monkeypatch, **dict.fromkeys(images.deployment_names(), ""))
    assert (empty["bind"], empty["workers"], empty["accesslog"], empty["loglevel"]) == (
        "127.0.0.1:8000",
        4,
        "-",
        "info",
    )


def test_gunicorn_takes_every_name_in_the_file(monkeypatch):
    """gunicorn's own reading (what its load_config_from_file does: known names are set, others silently
    ignored), so a misspelt setting would be lost: every public name in the file must be a gunicorn setting."""
    settings = _gunicorn_settings(monkeypatch)
    imported = {"os", "annotations"}  # `import os`, `from __future__ import annotations`
    names = {n for n, v in settings.items() if n[0] != "_" and n.islower() and n not in imported and not callable(v)}
    cfg = GunicornConfig()
    assert names - set(cfg.settings) == set()
    for name in names:
        cfg.set(name, settings[name])
    assert (cfg.workers, cfg.threads, cfg.timeout, cfg.worker_class_str) == (4, 2, 60, "gthread")
    assert cfg.address == [("127.0.0.1", 8000)]


def test_compose_app_service():
    app = images.compose()["services"]["app"]
    assert app["build"] == "."
    assert app["env_file"] == ".env"
    assert app["volumes"] == ["data:/data", "logs:/logs"]
    assert app["ports"] == ["127.0.0.1:${APP_PORT:-8000}:8000"]  # loopback only
    assert "/health/ready" in " ".join(app["healthcheck"]["test"])
    env = app["environment"]
    assert env["DATABASE_PATH"].startswith("/data/")
    assert env["GUNICORN_ACCESS_LOG"].startswith("/logs/") and env["GUNICORN_ERROR_LOG"].startswith("/logs/")
    assert env["GUNICORN_BIND"] == images.image_env()["GUNICORN_BIND"]
    assert app["depends_on"]["postgres"] == {"condition": "service_healthy", "required": False}


def test_compose_cron_service_calls_both_tasks_with_the_token():
    cron = images.compose()["services"]["cron"]
    assert cron["image"] == images.compose()["services"]["app"]["image"]
    assert cron["environment"] == {"CRON_TOKEN": "${CRON_TOKEN:?set CRON_TOKEN in .env}"}
    assert cron["depends_on"] == {"app": {"condition": "service_healthy"}}
    assert "env_file" not in cron  # only the one secret it needs
    script = cron["command"][2]
    assert cron["command"][:2] == ["python", "-c"]
    assert 'APP = "http://app:8000"' in script
    assert '"/tasks/refresh", 330' in script and 'call("/tasks/process-events", 110)' in script
    assert '{"X-Cron-Token": os.environ["CRON_TOKEN"]}' in script


def test_compose_postgres_profile_matches_the_documented_database_url():
    services = images.compose()["services"]
    postgres = services["postgres"]
    assert postgres["profiles"] == ["postgres"]
    env = postgres["environment"]
    url = make_env.PG_URL.format(password="pw")
    assert url == f"postgresql://{env['POSTGRES_USER']}:pw@postgres:5432/{env['POSTGRES_DB']}"
    assert make_env.PG_URL.format(password="<POSTGRES_PASSWORD>") in (ROOT / ".env.example").read_text()
    assert "profiles" not in services["app"] and "profiles" not in services["cron"]
    assert set(images.compose()["volumes"]) == {"data", "logs", "pg-data"}


def test_every_variable_the_deployment_passes_is_documented_and_known():
    """Compose's ${VAR}s and environment keys, the image's ENV and gunicorn.conf.py's variables: each is set in
    .env.example and is either a config.py setting or one of the documented deployment-only names."""
    services = images.compose()["services"]
    passed = images.compose_interpolated() | set(services["app"]["environment"]) | set(services["cron"]["environment"])
    passed |= set(images.image_env()) - RUNTIME_ENV
    passed |= set(re.findall(r'"(GUNICORN_[A-Z_]+)"', (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")))
    known = set(config.defaults()) | images.deployment_names()
    assert passed - images.env_example_names() == set()
    assert passed - known == set()
    assert images.deployment_names() & set(config.defaults()) == set()  # the section holds no app setting
    # env_file hands the app all of .env: .env.example holds only names someone reads, and every app setting.
    assert images.env_example_names() == known
    assert {"APP_PORT", "CRON_TOKEN", "POSTGRES_PASSWORD", "GUNICORN_ACCESS_LOG", "DATABASE_PATH"} <= passed


def test_make_env_old_names_are_config_aliases():
    assert {old: new for new, old in make_env.OLD_NAMES.items()}.items() <= config.ALIASES.items()


def test_fill_missing_secrets_keeps_every_set_value(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "APP_ENV=production\nSESSION_SIGNING_KEY=\nAPI_SECRET_TOKEN=kept-old-name-value\nCRON_TOKEN='kept cron'\n"
        "TOKEN_ENCRYPTION_KEY=\n",
        encoding="utf-8",
    )
    written = make_env.fill_missing(env)
    assert written == ["SESSION_SIGNING_KEY", "TOKEN_ENCRYPTION_KEY"]
    lines = env.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "APP_ENV=production"
    assert lines[2:4] == ["API_SECRET_TOKEN=kept-old-name-value", "CRON_TOKEN='kept cron'"]
    values = {name: value for name, value in (line.split("=", 1) for line in lines)}
    assert len(values["SESSION_SIGNING_KEY"]) >= config.MIN_SECRET_LENGTH
    config.Fernet(values["TOKEN_ENCRYPTION_KEY"])  # a real Fernet key
    assert "ADMIN_API_TOKEN" not in values  # the old name holds it
    assert env.stat().st_mode & 0o777 == 0o600
    before = env.read_text(encoding="utf-8")
    assert make_env.fill_missing(env) == []
    assert env.read_text(encoding="utf-8") == before


def test_fill_missing_secrets_for_the_postgres_profile(tmp_path):
    env = tmp_path / ".env"
    env.write_text("COMPOSE_PROFILES=postgres\nPOSTGRES_PASSWORD=\nDATABASE_URL=\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_env.py"), "--fill", str(env)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    values = dict(line.split("=", 1) for line in env.read_text(encoding="utf-8").splitlines())
    password = values["POSTGRES_PASSWORD"]
    assert len(password) >= 32
    assert values["DATABASE_URL"] == f"postgresql://telemost:{password}@postgres:5432/telemost"
    assert sorted(result.stdout.splitlines()) == sorted(
        f"generated {name}" for name in [*make_env.GENERATED, "POSTGRES_PASSWORD", "DATABASE_URL"]
    )
    for value in values.values():
        assert value not in result.stdout  # names only
