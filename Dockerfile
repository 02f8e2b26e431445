# Production image: gunicorn serving `app:app` on :8000, data (SQLite) on the /data volume.
# Build: docker build -t telemost-app .      Run: see docker-compose.yml and docs/deploy.md.
FROM python:3.11-slim

# DATABASE_PATH points into the volume (config.py's own default is <app dir>/data/app.db).
# AUTO_MIGRATE=false: migrations run once in CMD before gunicorn forks, so the workers must not
# each run them again at import time. Both can be overridden from the environment / env_file.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    DATABASE_PATH=/data/app.db \
    AUTO_MIGRATE=false \
    GUNICORN_WORKERS=3 \
    GUNICORN_TIMEOUT=330

# Fixed uid/gid so a bind-mounted data directory can be chowned to it (chown 10001:10001 ./data).
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is reused until requirements.txt changes.
# All pins ship manylinux wheels (psycopg[binary], cryptography), so no compiler is needed.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# Code stays root-owned and read-only for the app user; .dockerignore keeps out .git, .venv,
# node_modules, .env, data/ and test artefacts.
COPY . .

# Created before VOLUME so a fresh named volume inherits app:app ownership.
RUN mkdir -p /data && chown app:app /data
VOLUME /data

USER app
EXPOSE 8000

# Liveness only (no curl in slim images; urlopen raises on non-2xx). Readiness (/health/ready,
# 503 when the DB is unusable) is what docker-compose.yml checks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# Migrate once, then `exec` so gunicorn is PID 1 and receives SIGTERM from `docker stop`.
# --timeout must exceed the longest request: POST /tasks/refresh may run ~5 min (REFRESH_BUDGET_SECONDS).
# --forwarded-allow-ips=*: the proxy's address inside Docker is not fixed; safe only because the
# port is published on 127.0.0.1 (docker-compose.yml), so nothing but the local nginx can reach it.
# --worker-tmp-dir /dev/shm: gunicorn's worker heartbeat files must not sit on the overlay filesystem.
# --no-control-socket: gunicornc is not used, and HOME (/app) is read-only for the app user.
CMD ["sh", "-c", "flask --app app db upgrade && exec gunicorn app:app --bind 0.0.0.0:8000 --workers \"${GUNICORN_WORKERS:-3}\" --timeout \"${GUNICORN_TIMEOUT:-330}\" --worker-tmp-dir /dev/shm --no-control-socket --access-logfile - --forwarded-allow-ips='*'"]
