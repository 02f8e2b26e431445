# Production image: gunicorn (gunicorn.conf.py: 4 gthread workers x 2 threads, 60 s timeout) serving `app:app`
# on :8000; SQLite on the /data volume, gunicorn's logs on the /logs volume.
# Build: docker build -t telemost-app .      Run: docker-compose.yml, `./deploy.sh --docker`, docs/deploy.md.
FROM python:3.11-slim

# DATABASE_PATH points into the volume (config.py's own default is <app dir>/data/app.db).
# AUTO_MIGRATE=false: migrations run once before gunicorn forks (CMD below, and `deploy.sh --docker` before
# the start), never in each worker at import time.
# GUNICORN_BIND: gunicorn.conf.py's default is 127.0.0.1:8000 (a VM's own nginx); in a container it must
# listen on every interface, and docker-compose.yml publishes the port on the host's loopback only.
# GUNICORN_FORWARDED_ALLOW_IPS=*: in Docker the proxy's address is not fixed (the bridge gateway, or
# another container, differs per host and network), so gunicorn cannot list it. This only decides whether
# gunicorn believes X-Forwarded-Proto for wsgi.url_scheme; the app itself trusts X-Forwarded-* from exactly
# TRUSTED_PROXIES hops (werkzeug ProxyFix). Safe because nothing but the host's nginx reaches the port.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    DATABASE_PATH=/data/app.db \
    AUTO_MIGRATE=false \
    GUNICORN_BIND=0.0.0.0:8000 \
    GUNICORN_FORWARDED_ALLOW_IPS=*

# Fixed uid/gid, so files in the volumes have a known owner (e.g. chown 10001:10001 for a bind mount).
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is reused until requirements.txt changes.
# All pins ship manylinux wheels (psycopg[binary], cryptography), so no compiler is needed.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The code, with the built front end (static/dist is committed; .dockerignore keeps it in, and keeps out
# .git, .venv, node_modules, .env, data/, logs/ and test artefacts). Root-owned: read-only for the app user.
COPY . .

# Created before VOLUME so fresh named volumes inherit app:app ownership.
RUN mkdir -p /data /logs && chown app:app /data /logs
VOLUME ["/data", "/logs"]

USER app
EXPOSE 8000

# Liveness only (no curl in slim images; urlopen raises on non-2xx). Readiness (/health/ready, 503 when
# the database is unusable) is what docker-compose.yml and deploy.sh wait for.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# Migrate once (a no-op when deploy.sh already did), then `exec` so gunicorn is PID 1 and gets SIGTERM from
# `docker stop` (and SIGHUP / SIGUSR1 from `docker compose kill -s ...`). Every gunicorn setting is in
# gunicorn.conf.py, the file the tests run gunicorn with (tests/packaging checks the two agree).
CMD ["sh", "-c", "flask --app app db upgrade && exec gunicorn --config gunicorn.conf.py app:app"]
