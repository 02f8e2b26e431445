#!/usr/bin/env bash
# Install or update the app, in one of two modes:
# - systemd (the default): a plain VM without Docker: .venv + requirements, a production-config gate,
#   migrations, and a systemd unit running gunicorn with gunicorn.conf.py.
# - --docker: Docker Compose (docker-compose.yml): the same gate, build, migrate once, up -d, wait for
#   /health/ready, flask doctor inside the container.
# Idempotent: re-running converges to the same state (systemd: the unit is rewritten only when it changes;
# an unchanged, running service is reloaded gracefully with SIGHUP so Bitrix24 events, which are never
# re-sent, are not dropped; Docker: compose recreates only containers whose image or settings changed).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo ./deploy.sh [options]            (systemd service on this machine)
       ./deploy.sh --docker [options]         (Docker Compose; root not needed if you may run docker)

Deploys the checkout this script lives in (or --app-dir) as a systemd service running gunicorn, or with
--docker as the Docker Compose stack of docker-compose.yml (app, cron, optional postgres).
Needs <app-dir>/.env with APP_ENV=production and real secrets (see .env.example and docs/deploy.md).

Options:
  --docker           deploy with Docker Compose: build, migrate once, start, wait for /health/ready,
                     flask doctor (needs Docker Compose v2.20 or newer)
  --generate-secrets give every missing secret in .env a fresh random value (SESSION_SIGNING_KEY,
                     TOKEN_ENCRYPTION_KEY, ADMIN_API_TOKEN, CRON_TOKEN; POSTGRES_PASSWORD and DATABASE_URL
                     when COMPOSE_PROFILES=postgres); never changes a value that is set; prints only the
                     names. Creates .env from .env.example first when there is none.
  --dry-run          print what would be done (checks .env and prints the unit), change nothing
  --app-dir DIR      application checkout (default: the directory of this script)

systemd mode only:
  --user NAME        system account the service runs as; created if missing (default: telemost)
  --service NAME     systemd unit name (default: telemost-app)
  --bind HOST:PORT   gunicorn listen address (default: 127.0.0.1:8000, for nginx on this host)
  --python PATH      interpreter for a new .venv (default: python3.11, else python3; needs >= 3.11)
  --duckdns SUB      keep SUB.duckdns.org pointing at this host: installs a cron line that updates the IP
                     every 5 minutes (needs --duckdns-token-file)
  --duckdns-token-file FILE
                     file holding the DuckDNS token (mode 600 or 400, owned by root or the service user);
                     the token is read when cron runs, never copied, printed or put on a command line
  -h, --help         show this help

PUBLIC_URL may be http:// (a DuckDNS or own domain without TLS) and an IDN host (http://телемост.рф):
the nginx server_name is printed in punycode. `flask doctor` runs after the start and reports problems.
At the end it prints the URLs to paste into the Bitrix24 local application form.

gunicorn's settings are in gunicorn.conf.py (4 gthread workers x 2 threads, 60 s timeout); .env may
change GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_TIMEOUT, GUNICORN_GRACEFUL_TIMEOUT and
GUNICORN_LOG_LEVEL. Docker mode also reads APP_PORT (the loopback port the app is published on, 8000).
EOF
}

APP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APP_USER=telemost
SERVICE=telemost-app
BIND=127.0.0.1:8000
PYTHON=""
DRY_RUN=0
DOCKER=0
GENERATE_SECRETS=0
DUCKDNS=""
DUCKDNS_TOKEN_FILE=""

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --docker) DOCKER=1 ;;
    --generate-secrets) GENERATE_SECRETS=1 ;;
    --app-dir) APP_DIR=${2:?--app-dir needs a value}; shift ;;
    --user) APP_USER=${2:?--user needs a value}; shift ;;
    --service) SERVICE=${2:?--service needs a value}; shift ;;
    --bind) BIND=${2:?--bind needs a value}; shift ;;
    --python) PYTHON=${2:?--python needs a value}; shift ;;
    --duckdns) DUCKDNS=${2:?--duckdns needs a subdomain}; shift ;;
    --duckdns-token-file) DUCKDNS_TOKEN_FILE=${2:?--duckdns-token-file needs a file}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'unknown option: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# Run a command, or only show it under --dry-run.
run() {
  if ((DRY_RUN)); then
    printf '[dry-run]'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

APP_DIR=$(cd "$APP_DIR" && pwd) || die "no such directory: $APP_DIR"
[[ $APP_DIR != *[[:space:]]* ]] || die "the app directory must not contain spaces (systemd ExecStart): $APP_DIR"
# Where this host reaches gunicorn (health check, curl cron line); empty for a unix socket bind.
case $BIND in
  unix:*) LOCAL_URL="" ;;
  0.0.0.0:* | :*) LOCAL_URL="http://127.0.0.1:${BIND##*:}" ;;
  "[::]:"*) LOCAL_URL="http://[::1]:${BIND##*:}" ;;
  *:*) LOCAL_URL="http://$BIND" ;;
  *) die "--bind must be HOST:PORT or unix:PATH" ;;
esac
ENV_FILE=$APP_DIR/.env
VENV=$APP_DIR/.venv
UNIT_FILE=/etc/systemd/system/$SERVICE.service
# Migration command (the app registers `flask db upgrade` in database.py). Change here if it is renamed.
MIGRATE=(flask --app app db upgrade)
cd "$APP_DIR"

[[ -f app.py && -f requirements.txt ]] || die "$APP_DIR does not look like the app checkout (no app.py / requirements.txt)"
COMPOSE=(docker compose)
if ((DOCKER)); then
  [[ -f docker-compose.yml && -f Dockerfile ]] || die "$APP_DIR has no docker-compose.yml / Dockerfile"
  [[ -z $DUCKDNS && -z $DUCKDNS_TOKEN_FILE ]] || die "--duckdns is for the systemd mode (run it without --docker)"
  if ! ((DRY_RUN)); then
    command -v docker >/dev/null || die "docker is not installed (https://docs.docker.com/engine/install/)"
    # depends_on.required (the optional postgres service) needs Compose v2.20.
    compose_version=$("${COMPOSE[@]}" version --short 2>/dev/null) || die "the Docker Compose plugin is missing (docker compose version)"
    [[ $compose_version =~ ^v?([0-9]+)\.([0-9]+) ]] || die "cannot read the Docker Compose version ($compose_version)"
    ((BASH_REMATCH[1] > 2 || (BASH_REMATCH[1] == 2 && BASH_REMATCH[2] >= 20))) ||
      die "Docker Compose $compose_version is too old: v2.20 or newer is needed"
  fi
else
  [[ $APP_USER != root ]] || die "refusing to run the service as root; pass --user NAME"
  if ! ((DRY_RUN)); then
    ((EUID == 0)) || die "run as root (sudo $0): it creates a system user and installs a systemd unit"
    if [[ ! -d /run/systemd/system ]] || ! command -v systemctl >/dev/null; then
      die "systemd is not running on this machine"
    fi
    command -v runuser >/dev/null || die "runuser (util-linux) is required"
  fi
fi

# --- missing secrets (--generate-secrets) ----------------------------------------------------------
# scripts/make_env.py fills only missing or empty values and prints their names, never the values.
if ((GENERATE_SECRETS)); then
  if [[ ! -f $ENV_FILE ]]; then
    [[ -f .env.example ]] || die "neither $ENV_FILE nor .env.example exists"
    log "creating $ENV_FILE from .env.example"
    run install -m 600 .env.example "$ENV_FILE"
  fi
  command -v python3 >/dev/null || die "--generate-secrets needs python3 on this machine"
  log "generating the missing secrets in $ENV_FILE"
  run python3 scripts/make_env.py --fill "$ENV_FILE" || die "could not write the secrets into $ENV_FILE"
fi

# --- .env gate ----------------------------------------------------------------------------------
# A quick look for obvious mistakes before touching anything (in Docker mode: before building); the app's
# own validation (config.py, `flask check-config`, run below as the service user or in the container) is
# the real check. Parses simple KEY=VALUE lines like python-dotenv.
[[ -f $ENV_FILE ]] || die "$ENV_FILE is missing: copy .env.example to .env and fill it in (APP_ENV=production), or pass --generate-secrets"

env_get() {
  local line val=""
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=[[:space:]]*(.*)$ ]]; then
      val=${BASH_REMATCH[2]}
    fi
  done <"$ENV_FILE"
  if [[ $val =~ ^\"(.*)\"[[:space:]]*(#.*)?$ || $val =~ ^\'(.*)\'[[:space:]]*(#.*)?$ ]]; then
    val=${BASH_REMATCH[1]}
  else
    val=${val%%[[:space:]]#*}
    val=${val%"${val##*[![:space:]]}"}
  fi
  printf '%s' "$val"
}

# The old tools' names (config.py ALIASES) count when the new one is not set.
env_get_new_or_old() {
  local value
  value=$(env_get "$1")
  [[ -n $value ]] || value=$(env_get "$2")
  printf '%s' "$value"
}

# A host for nginx (punycode) and for people (Unicode), from PUBLIC_URL: the idna package when importable,
# else Python's own codec (before the venv exists).
host_forms() {
  local py
  py=$(command -v python3 || true)
  [[ -n $py ]] || { printf '%s\n%s\n' "$1" "$1"; return; }
  "$py" - "$1" <<'PYEOF'
import sys
from urllib.parse import urlsplit

host = (urlsplit(sys.argv[1]).hostname or "").rstrip(".")
try:
    import idna
    ascii_host = idna.encode(host, uts46=True).decode() if host else ""
    readable = idna.decode(ascii_host) if ascii_host else ""
except Exception:  # noqa: BLE001
    ascii_host = host.encode("idna").decode() if host else ""
    readable = ascii_host.encode().decode("idna") if ascii_host else ""
print(ascii_host)
print(readable)
PYEOF
}

looks_like_placeholder() {
  local v=${1,,}
  [[ -z $v || $v =~ change.?me|replace|placeholder|example|your[-_]|todo|xxx|dummy|insecure|^\<.*\>$ ]]
}

problems=()
app_env=$(env_get_new_or_old APP_ENV FLASK_ENV)
[[ $app_env == production ]] || problems+=("APP_ENV must be production (is '$app_env')")
loopback=$(env_get ALLOW_LOOPBACK_PORTALS)
case ${loopback,,} in
  "" | 0 | false | no | off) ;;
  *) problems+=("ALLOW_LOOPBACK_PORTALS must be off in production (is '$loopback')") ;;
esac
PUBLIC_URL=$(env_get PUBLIC_URL)
if [[ -z $PUBLIC_URL && -n $(env_get YANDEX_REDIRECT_URI) ]]; then
  PUBLIC_URL=$(env_get YANDEX_REDIRECT_URI) # the old Telemost app's setting: only its host matters here
fi
case $PUBLIC_URL in
  https://?*) ;;
  http://?*) log "PUBLIC_URL is plain http:// — works, but tokens travel unencrypted; add TLS when you can" ;;
  *) problems+=("PUBLIC_URL must be the app's public http:// or https:// address") ;;
esac
PUBLIC_HOST="" PUBLIC_HOST_READABLE=""
{ read -r PUBLIC_HOST; read -r PUBLIC_HOST_READABLE; } < <(host_forms "$PUBLIC_URL") || true
declare -A OLD_NAME=([SESSION_SIGNING_KEY]=SECRET_KEY [ADMIN_API_TOKEN]=API_SECRET_TOKEN)
for name in SESSION_SIGNING_KEY ADMIN_API_TOKEN CRON_TOKEN BITRIX24_CLIENT_SECRET; do
  value=$(env_get_new_or_old "$name" "${OLD_NAME[$name]:-$name}")
  if looks_like_placeholder "$value"; then
    problems+=("$name is empty or a placeholder")
  elif ((${#value} < 32)); then
    problems+=("$name is shorter than 32 characters")
  fi
done
if looks_like_placeholder "$(env_get BITRIX24_CLIENT_ID)"; then
  problems+=("BITRIX24_CLIENT_ID is empty or a placeholder")
fi
for name in YANDEX_CLIENT_SECRET YANDEX_OAUTH_TOKEN AMOCRM_CLIENT_SECRET; do # optional, but not fake
  value=$(env_get "$name")
  if [[ -n $value ]] && looks_like_placeholder "$value"; then
    problems+=("$name is a placeholder")
  fi
done
keys=$(env_get TOKEN_ENCRYPTION_KEY)
[[ -n $keys ]] || problems+=("TOKEN_ENCRYPTION_KEY is empty")
IFS=',' read -r -a key_list <<<"$keys"
for key in "${key_list[@]}"; do
  key=${key//[[:space:]]/}
  [[ -z $key || $key =~ ^[A-Za-z0-9_-]{43}=$ ]] || { problems+=("TOKEN_ENCRYPTION_KEY holds a value that is not a Fernet key"); break; }
done
# gunicorn.conf.py reads these from the environment; the systemd unit passes the ones .env sets.
GUNICORN_OPTIONS=""
for name in GUNICORN_WORKERS GUNICORN_THREADS GUNICORN_TIMEOUT GUNICORN_GRACEFUL_TIMEOUT GUNICORN_LOG_LEVEL; do
  value=$(env_get "$name")
  if [[ $name == GUNICORN_LOG_LEVEL ]]; then
    [[ -z $value || ${value,,} =~ ^(debug|info|warning|error|critical)$ ]] ||
      problems+=("$name must be debug, info, warning, error or critical")
  elif [[ -n $value && ! $value =~ ^[1-9][0-9]*$ ]]; then
    problems+=("$name must be a positive integer")
  fi
  [[ -z $value ]] || GUNICORN_OPTIONS+=" $name=$value"
done
APP_PORT=$(env_get APP_PORT); APP_PORT=${APP_PORT:-8000}
if ((DOCKER)) && { [[ ! $APP_PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((APP_PORT > 65535)); }; then
  problems+=("APP_PORT must be a TCP port (1-65535)")
fi

# --- DuckDNS (optional) ------------------------------------------------------------------------------
DUCKDNS_OWNER=""
if [[ -n $DUCKDNS || -n $DUCKDNS_TOKEN_FILE ]]; then
  DUCKDNS=${DUCKDNS,,}
  DUCKDNS=${DUCKDNS%.duckdns.org}
  if [[ ! $DUCKDNS =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]]; then
    problems+=("--duckdns needs the subdomain, e.g. --duckdns myapp for myapp.duckdns.org")
  elif [[ -z $DUCKDNS_TOKEN_FILE ]]; then
    problems+=("--duckdns needs --duckdns-token-file FILE (the token is never passed on the command line)")
  elif [[ ! -f $DUCKDNS_TOKEN_FILE || ! -r $DUCKDNS_TOKEN_FILE ]]; then
    problems+=("--duckdns-token-file: $DUCKDNS_TOKEN_FILE is not a readable file")
  else
    DUCKDNS_TOKEN_FILE=$(cd "$(dirname "$DUCKDNS_TOKEN_FILE")" && pwd)/$(basename "$DUCKDNS_TOKEN_FILE")
    mode=$(stat -c %a "$DUCKDNS_TOKEN_FILE")
    DUCKDNS_OWNER=$(stat -c %U "$DUCKDNS_TOKEN_FILE")
    if (((8#$mode & 8#077) != 0)); then
      problems+=("--duckdns-token-file: $DUCKDNS_TOKEN_FILE has mode $mode, others can read the token: chmod 600 it")
    fi
    if [[ $DUCKDNS_OWNER != root && $DUCKDNS_OWNER != "$APP_USER" ]] && ! ((DRY_RUN)); then
      problems+=("--duckdns-token-file: $DUCKDNS_TOKEN_FILE must belong to root or $APP_USER (is $DUCKDNS_OWNER)")
    fi
    # Checked without ever printing it: a DuckDNS token is a UUID.
    if ! grep -qE '^[[:space:]]*[A-Za-z0-9-]{8,64}[[:space:]]*$' "$DUCKDNS_TOKEN_FILE"; then
      problems+=("--duckdns-token-file: $DUCKDNS_TOKEN_FILE does not hold a DuckDNS token (one line, the UUID)")
    fi
    [[ $PUBLIC_HOST == "$DUCKDNS.duckdns.org" ]] ||
      log "note: PUBLIC_URL's host ($PUBLIC_HOST_READABLE) is not $DUCKDNS.duckdns.org"
  fi
fi

refused=0
if ((${#problems[@]})); then
  printf 'error: %s\n' "${problems[@]}" >&2
  ((DRY_RUN)) || die "fix $ENV_FILE and re-run"
  printf '[dry-run] a real run would stop here; showing the rest of the plan anyway\n' >&2
  refused=1
fi

# --- what to paste into Bitrix24 (both modes) ---------------------------------------------------------
# URLs for Bitrix24 in punycode (what it is given), the app's address for people in Unicode.
print_app_urls() {
  local base=${PUBLIC_URL%/}
  [[ -z $PUBLIC_HOST_READABLE || -z $PUBLIC_HOST ]] || base=${base/"$PUBLIC_HOST_READABLE"/"$PUBLIC_HOST"}
  cat <<EOF

Bitrix24 local application form (Applications → Developer resources → Other → Local application; server
application with an interface). Paste:
  Your handler path:           $base/
  Initial installation path:   $base/install
  Assign permissions (scopes): user, calendar, im, imbot, imopenlines, placement, crm
  OAuth redirect URI:          $base/auth/bitrix24/callback
The Open Lines bot's handler is registered automatically when the app is installed. The form's client_id
and client_secret go into .env as BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET (re-run deploy.sh after a change).
EOF
  printf '\nThe app: %s\n' "${PUBLIC_URL/"$PUBLIC_HOST"/"$PUBLIC_HOST_READABLE"}"
}

# HTTP 2xx from URL within 3 s: curl when there is one, else python3.
http_ok() {
  if command -v curl >/dev/null; then
    curl -fsS -m 3 -o /dev/null "$1" 2>/dev/null
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$1" 2>/dev/null
  fi
}

# --- Docker Compose mode ------------------------------------------------------------------------------
# The settings reach the containers through compose (env_file: .env), so .env stays the operator's file
# (mode 600). Each step is safe to repeat: a cached build, migrations already at head are a no-op, and
# `up -d` recreates only containers whose image or settings changed.
deploy_docker() {
  run chmod 600 "$ENV_FILE"
  log "building the image"
  run "${COMPOSE[@]}" build || die "docker compose build failed"
  log "checking the configuration with the app's own validation (in the image)"
  run "${COMPOSE[@]}" run --rm app flask --app app check-config || die "the app refuses this configuration (see above)"
  log "running migrations (once, before the workers start)"
  run "${COMPOSE[@]}" run --rm app "${MIGRATE[@]}" || die "migrations failed (see above)"
  log "starting the app and cron"
  run "${COMPOSE[@]}" up -d || die "docker compose up failed: ${COMPOSE[*]} logs app"
  local ready_url="http://127.0.0.1:$APP_PORT/health/ready" ready=0
  if ! ((DRY_RUN)); then
    log "waiting for $ready_url"
    for _ in $(seq 1 120); do
      if http_ok "$ready_url"; then
        ready=1
        break
      fi
      sleep 1
    done
    ((ready)) || die "the app is not ready after 120 s: ${COMPOSE[*]} logs app"
    log "ready"
  fi
  log "checking everything the app depends on: flask doctor"
  local doctor_failed=0
  run "${COMPOSE[@]}" exec -T app flask --app app doctor || doctor_failed=1
  cat <<EOF

cron: the compose service "cron" calls /tasks/process-events every minute and /tasks/refresh every
5 minutes (${COMPOSE[*]} logs cron). Logs: ${COMPOSE[*]} logs app; gunicorn's access and error logs are
in the "logs" volume (${COMPOSE[*]} exec app tail -f /logs/access.log).
nginx: include nginx-integration.conf in your server {} block with the upstream 127.0.0.1:$APP_PORT
(see docs/deploy.md).
EOF
  print_app_urls
  if ((doctor_failed)); then
    printf 'error: the app runs, but flask doctor found problems (FAIL lines above); fix them, then check:\n' >&2
    printf '  %s exec app flask --app app doctor\n' "${COMPOSE[*]}" >&2
    return 1
  fi
  return "$refused"
}

if ((DOCKER)); then
  deploy_docker
  exit $?
fi

# --- service account and file access ------------------------------------------------------------
if id -u "$APP_USER" >/dev/null 2>&1; then
  APP_GROUP=$(id -gn "$APP_USER")
else
  log "creating system user $APP_USER"
  run useradd --system --user-group --home-dir "$APP_DIR" --no-create-home --shell /usr/sbin/nologin "$APP_USER"
  APP_GROUP=$APP_USER
fi
# .env holds the secrets: readable by the service, not by everyone.
run chgrp "$APP_GROUP" "$ENV_FILE"
run chmod 640 "$ENV_FILE"

# Commands as the service user with a clean environment, as systemd would start them: the app reads
# .env itself (config.py; the flask CLI too). AUTO_MIGRATE=false: only the explicit step migrates.
as_app() {
  run runuser -u "$APP_USER" -- env -i "PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 AUTO_MIGRATE=false "$@"
}

if ! ((DRY_RUN)); then
  runuser -u "$APP_USER" -- test -r "$APP_DIR/app.py" -a -r "$ENV_FILE" ||
    die "$APP_USER cannot read $APP_DIR (check the permissions of it and its parent directories)"
fi

# --- virtualenv -----------------------------------------------------------------------------------
if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "reusing $VENV"
else
  if [[ -z $PYTHON ]]; then
    PYTHON=$(command -v python3.11 || command -v python3 || true)
  fi
  [[ -n $PYTHON ]] || die "no python3 found; install Python 3.11 (or pass --python)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is older than 3.11; install python3.11 or pass --python"
  log "creating $VENV with $PYTHON"
  # --clear also repairs a venv whose interpreter vanished (e.g. after an OS upgrade).
  run "$PYTHON" -m venv --clear "$VENV" || die "venv creation failed (Debian/Ubuntu: apt-get install python3-venv)"
fi
log "installing requirements"
run "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -r requirements.txt
if ! ((DRY_RUN)); then
  # A venv links to its base interpreter; one under a private home (e.g. /root/.pyenv) is unusable.
  runuser -u "$APP_USER" -- "$VENV/bin/python" -c 'import flask, gunicorn' ||
    die "$APP_USER cannot run $VENV/bin/python; remove .venv and re-run with --python /usr/bin/python3.11"
fi

# --- database location (SQLite only) -----------------------------------------------------------
DB_DIR=""
if [[ -z $(env_get DATABASE_URL) ]]; then
  DB_PATH=$(env_get DATABASE_PATH)
  DB_PATH=${DB_PATH:-$APP_DIR/data/app.db} # config.py's default
  [[ $DB_PATH == /* ]] || DB_PATH=$APP_DIR/$DB_PATH
  DB_DIR=$(dirname "$DB_PATH")
  [[ $DB_DIR != *[[:space:]]* ]] || die "DATABASE_PATH must not contain spaces (systemd ReadWritePaths)"
  if [[ -d $DB_DIR ]]; then
    # Never chown an existing directory (it could be /var/lib); just check the service can write there.
    if ! ((DRY_RUN)); then
      runuser -u "$APP_USER" -- test -w "$DB_DIR" || die "$APP_USER cannot write $DB_DIR (SQLite needs the directory for its WAL files)"
      [[ ! -e $DB_PATH ]] || runuser -u "$APP_USER" -- test -w "$DB_PATH" || die "$APP_USER cannot write $DB_PATH"
    fi
  else
    log "creating $DB_DIR for the SQLite database"
    run install -d -o "$APP_USER" -g "$APP_GROUP" -m 750 "$DB_DIR"
  fi
fi

# --- configuration check and migrations ------------------------------------------------------------
log "checking the configuration with the app's own validation"
if ((DRY_RUN)); then
  as_app "$VENV/bin/flask" --app app check-config
else
  as_app "$VENV/bin/flask" --app app check-config || die "the app refuses this configuration (see above)"
fi
log "running migrations"
as_app "$VENV/bin/${MIGRATE[0]}" "${MIGRATE[@]:1}"

# --- systemd unit ----------------------------------------------------------------------------------
unit_text() {
  cat <<EOF
# Written by deploy.sh; re-run it rather than editing. Local additions: systemctl edit $SERVICE
[Unit]
Description=Telemost Bitrix24 app (gunicorn)
After=network-online.target
Wants=network-online.target

[Service]
# gunicorn reports readiness to systemd itself (sd_notify).
Type=notify
NotifyAccess=main
User=$APP_USER
Group=$APP_GROUP
WorkingDirectory=$APP_DIR
# The app reads $ENV_FILE itself (python-dotenv), so no EnvironmentFile= with systemd's different
# parser. Migrations ran in deploy.sh before the workers start, hence AUTO_MIGRATE=false.
# gunicorn.conf.py reads the GUNICORN_* values that .env sets (given here, as gunicorn reads its
# config file before the app loads .env).
Environment=PYTHONUNBUFFERED=1 AUTO_MIGRATE=false$GUNICORN_OPTIONS
# The production settings (gthread workers, timeouts, X-Forwarded-Proto from the local nginx only, no
# gunicornc control socket) are in gunicorn.conf.py: the same file the Docker image and the tests use.
ExecStart=$VENV/bin/gunicorn --config gunicorn.conf.py app:app --bind $BIND
# SIGHUP: new workers with the new code, old ones finish their requests.
ExecReload=/bin/kill -s HUP \$MAINPID
KillMode=mixed
TimeoutStopSec=40
Restart=on-failure
RestartSec=5
NoNewPrivileges=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectControlGroups=true
ProtectSystem=strict
${DB_DIR:+ReadWritePaths=$DB_DIR}

[Install]
WantedBy=multi-user.target
EOF
}

unit_changed=1
if [[ -f $UNIT_FILE ]] && cmp -s <(unit_text) "$UNIT_FILE"; then
  unit_changed=0
fi
if ((DRY_RUN)); then
  if ((unit_changed)); then
    log "would write $UNIT_FILE:"
    unit_text | sed 's/^/    /'
  else
    log "$UNIT_FILE is up to date"
  fi
  run systemctl daemon-reload
  run systemctl enable "$SERVICE"
  run systemctl reload-or-restart "$SERVICE"
else
  if ((unit_changed)); then
    log "writing $UNIT_FILE"
    unit_text >"$UNIT_FILE.tmp"
    chmod 644 "$UNIT_FILE.tmp"
    mv "$UNIT_FILE.tmp" "$UNIT_FILE"
    systemctl daemon-reload
  fi
  systemctl enable --quiet "$SERVICE"
  if ((unit_changed)) || ! systemctl is-active --quiet "$SERVICE"; then
    log "restarting $SERVICE"
    systemctl restart "$SERVICE"
  else
    log "reloading $SERVICE (graceful)"
    systemctl reload "$SERVICE"
  fi

  # Wait for readiness (/health/ready answers 503 until the database is usable).
  if [[ -n $LOCAL_URL ]]; then
    log "waiting for $LOCAL_URL/health/ready"
    ready=0
    for _ in $(seq 1 30); do
      if "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
        "$LOCAL_URL/health/ready" 2>/dev/null; then
        ready=1
        break
      fi
      sleep 2
    done
    ((ready)) || die "$SERVICE is not ready after 60 s: journalctl -u $SERVICE -n 100"
    log "ready"
  fi
fi

# --- flask doctor --------------------------------------------------------------------------------------
log "checking everything the app depends on: flask doctor"
doctor_failed=0
if ((DRY_RUN)); then
  as_app "$VENV/bin/flask" --app app doctor
else
  as_app "$VENV/bin/flask" --app app doctor || doctor_failed=1
fi

# --- DuckDNS cron line --------------------------------------------------------------------------------------
if [[ -n $DUCKDNS ]]; then
  DUCKDNS_CRON=/etc/cron.d/$SERVICE-duckdns
  # The script reads the token from the file when it runs and hands it to curl on stdin (-K -): it is in
  # neither the crontab nor any command line (ps).
  duckdns_line="*/5 * * * * ${DUCKDNS_OWNER:-root} /bin/sh $APP_DIR/scripts/duckdns_update.sh $DUCKDNS $DUCKDNS_TOKEN_FILE 2>&1 | logger -t $SERVICE-duckdns"
  if ((DRY_RUN)); then
    log "would write $DUCKDNS_CRON:"
    printf '    %s\n' "$duckdns_line"
  else
    log "writing $DUCKDNS_CRON ($DUCKDNS.duckdns.org → this host every 5 minutes)"
    printf '# Written by deploy.sh --duckdns; re-run it rather than editing.\n%s\n' "$duckdns_line" >"$DUCKDNS_CRON.tmp"
    chmod 644 "$DUCKDNS_CRON.tmp"
    mv "$DUCKDNS_CRON.tmp" "$DUCKDNS_CRON"
    /bin/sh "$APP_DIR/scripts/duckdns_update.sh" "$DUCKDNS" "$DUCKDNS_TOKEN_FILE" >/dev/null ||
      log "warning: the first DuckDNS update failed; cron retries every 5 minutes"
  fi
fi

# --- cron --------------------------------------------------------------------------------------------
cat <<EOF

Token refresh and bot event processing are driven by cron (no scheduler inside the app). Put ONE of these
pairs in /etc/cron.d/$SERVICE:

  # flask CLI: no secret in the crontab; flock skips a run while the previous one is still going
  */5 * * * * $APP_USER cd $APP_DIR && flock -n /tmp/$SERVICE-refresh.lock $VENV/bin/flask --app app tokens refresh 2>&1 | logger -t $SERVICE-refresh
  * * * * * $APP_USER cd $APP_DIR && flock -n /tmp/$SERVICE-events.lock $VENV/bin/flask --app app bot process-events 2>&1 | logger -t $SERVICE-events

  # HTTP: same work through the running service (replace <CRON_TOKEN> with the value from .env;
  # the token is then visible in the crontab and in ps, so keep the file mode 600)
  */5 * * * * $APP_USER curl -fsS -m 330 -X POST -H 'X-Cron-Token: <CRON_TOKEN>' ${LOCAL_URL:-http://127.0.0.1:8000}/tasks/refresh 2>&1 | logger -t $SERVICE-refresh
  * * * * * $APP_USER curl -fsS -m 110 -X POST -H 'X-Cron-Token: <CRON_TOKEN>' ${LOCAL_URL:-http://127.0.0.1:8000}/tasks/process-events 2>&1 | logger -t $SERVICE-events

nginx: include nginx-integration.conf in your server {} block (see docs/deploy.md).
EOF
if [[ $PUBLIC_URL == http://* && -n $PUBLIC_HOST ]]; then
  cat <<EOF
Plain HTTP on ${PUBLIC_HOST_READABLE}: a server block for it (server_name in punycode, as nginx needs):

  server {
      listen 80;
      server_name $PUBLIC_HOST;  # $PUBLIC_HOST_READABLE
      include /etc/nginx/snippets/$SERVICE.conf;
  }
EOF
fi
print_app_urls

if ((doctor_failed)); then
  printf 'error: the service runs, but flask doctor found problems (FAIL lines above); fix them, then check:\n' >&2
  printf '  sudo -u %s %s/bin/flask --app app doctor\n' "$APP_USER" "$VENV" >&2
  exit 1
fi
exit "$refused"
