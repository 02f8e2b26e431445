"""gunicorn settings for production: the Docker image, deploy.sh's systemd unit and the tests all use this file.

    gunicorn -c gunicorn.conf.py app:app

Every setting can be changed from the environment (the names below), or overridden on the command line,
which gunicorn applies after this file (the tests pass --bind for a free port).

- 4 workers × 2 threads (gthread). A thread blocked on Bitrix24, Telemost or the database does not stop
  the worker's other thread, and the arbiter's heartbeat keeps going while a long request runs.
- timeout 60 s: with gthread it is how long a worker may stay silent (hung), not a request's duration,
  so the ~5 min POST /tasks/refresh run is not killed by it.
- No migrations here: `flask --app app db upgrade` runs once before gunicorn starts (Dockerfile CMD,
  deploy.sh), never in each worker.
"""

from __future__ import annotations

import os


# Set but empty means the default, as in config.py: .env.example lists every GUNICORN_* name with no value, and
# Docker Compose hands a copied .env to the container as it is (env_file).
def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


bind = _str("GUNICORN_BIND", "127.0.0.1:8000")
workers = _int("GUNICORN_WORKERS", 4)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 2)
timeout = _int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5
# Larger bodies are refused by nginx (client_max_body_size) and by the app (MAX_CONTENT_LENGTH).
limit_request_line = 8190
# Heartbeat files on tmpfs where there is one (an overlay or a slow disk can stall the arbiter's check).
# gunicorn creates them itself (mkstemp, mode 600), so a shared directory is safe.
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
# gunicornc is not used, and the service user's HOME may be read-only.
control_socket_disable = True
# X-Forwarded-* are read by the app itself (TRUSTED_PROXIES, werkzeug ProxyFix), not by gunicorn.
forwarded_allow_ips = _str("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# "-" = stdout/stderr (journald on a VM); docker-compose.yml names files in the /logs volume.
accesslog = _str("GUNICORN_ACCESS_LOG", "-")
errorlog = _str("GUNICORN_ERROR_LOG", "-")
loglevel = _str("GUNICORN_LOG_LEVEL", "info")
