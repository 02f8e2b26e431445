#!/usr/bin/env bash
# Install or update the app on a plain VM without Docker: .venv + requirements, a production-config
# gate, migrations, and a systemd unit running gunicorn. Idempotent: re-running converges to the same
# state (the unit is rewritten only when it changes; an unchanged, running service is reloaded
# gracefully with SIGHUP so Bitrix24 events, which are never re-sent, are not dropped).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo ./deploy.sh [options]

Deploys the checkout this script lives in (or --app-dir) as a systemd service running gunicorn.
Needs <app-dir>/.env with APP_ENV=production and real secrets (see .env.example and docs/deploy.md).

Options:
  --dry-run          print what would be done (checks .env and prints the unit), change nothing
  --app-dir DIR      application checkout (default: the directory of this script)
  --user NAME        system account the service runs as; created if missing (default: telemost)
  --service NAME     systemd unit name (default: telemost-app)
  --bind HOST:PORT   gunicorn listen address (default: 127.0.0.1:8000, for nginx on this host)
  --python PATH      interpreter for a new .venv (default: python3.11, else python3; needs >= 3.11)
  -h, --help         show this help

Settings read from .env besides the app's own: GUNICORN_WORKERS (default 3),
GUNICORN_TIMEOUT (default 330 s; must exceed the ~5 min refresh run).
EOF
}

APP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APP_USER=telemost
SERVICE=telemost-app
BIND=127.0.0.1:8000
PYTHON=""
DRY_RUN=0

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --app-dir) APP_DIR=${2:?--app-dir needs a value}; shift ;;
    --user) APP_USER=${2:?--user needs a value}; shift ;;
    --service) SERVICE=${2:?--service needs a value}; shift ;;
    --bind) BIND=${2:?--bind needs a value}; shift ;;
    --python) PYTHON=${2:?--python needs a value}; shift ;;
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
[[ $APP_USER != root ]] || die "refusing to run the service as root; pass --user NAME"
if ! ((DRY_RUN)); then
  ((EUID == 0)) || die "run as root (sudo $0): it creates a system user and installs a systemd unit"
  if [[ ! -d /run/systemd/system ]] || ! command -v systemctl >/dev/null; then
    die "systemd is not running on this machine"
  fi
  command -v runuser >/dev/null || die "runuser (util-linux) is required"
fi

# --- .env gate ----------------------------------------------------------------------------------
# A quick look for obvious mistakes before touching anything; the app's own validation (config.py,
# run below as the service user) is the real check. Parses simple KEY=VALUE lines like python-dotenv.
[[ -f $ENV_FILE ]] || die "$ENV_FILE is missing: copy .env.example to .env and fill it in (APP_ENV=production)"

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

looks_like_placeholder() {
  local v=${1,,}
  [[ -z $v || $v =~ change.?me|replace|placeholder|example|your[-_]|todo|xxx|dummy|insecure|^\<.*\>$ ]]
}

problems=()
[[ $(env_get APP_ENV) == production ]] || problems+=("APP_ENV must be production (is '$(env_get APP_ENV)')")
loopback=$(env_get ALLOW_LOOPBACK_PORTALS)
case ${loopback,,} in
  "" | 0 | false | no | off) ;;
  *) problems+=("ALLOW_LOOPBACK_PORTALS must be off in production (is '$loopback')") ;;
esac
[[ $(env_get PUBLIC_URL) == https://* ]] || problems+=("PUBLIC_URL must be the public https:// address")
for name in SESSION_SIGNING_KEY ADMIN_API_TOKEN CRON_TOKEN BITRIX24_CLIENT_SECRET; do
  value=$(env_get "$name")
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
WORKERS=$(env_get GUNICORN_WORKERS); WORKERS=${WORKERS:-3}
TIMEOUT=$(env_get GUNICORN_TIMEOUT); TIMEOUT=${TIMEOUT:-330}
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || problems+=("GUNICORN_WORKERS must be a positive integer")
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || problems+=("GUNICORN_TIMEOUT must be a positive integer (seconds)")

refused=0
if ((${#problems[@]})); then
  printf 'error: %s\n' "${problems[@]}" >&2
  ((DRY_RUN)) || die "fix $ENV_FILE and re-run"
  printf '[dry-run] a real run would stop here; showing the rest of the plan anyway\n' >&2
  refused=1
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
Environment=PYTHONUNBUFFERED=1 AUTO_MIGRATE=false
# --timeout above the ~5 min refresh run; X-Forwarded-Proto trusted from the local nginx only;
# no gunicornc control socket (its default place, HOME, is read-only under ProtectSystem=strict).
ExecStart=$VENV/bin/gunicorn app:app --bind $BIND --workers $WORKERS --timeout $TIMEOUT --no-control-socket --access-logfile - --forwarded-allow-ips=127.0.0.1,::1
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

# --- cron --------------------------------------------------------------------------------------------
cat <<EOF

Token refresh is driven by cron (no scheduler inside the app). Put ONE of these in /etc/cron.d/$SERVICE:

  # flask CLI: no secret in the crontab; flock skips a run while the previous one is still going
  */5 * * * * $APP_USER cd $APP_DIR && flock -n /tmp/$SERVICE-refresh.lock $VENV/bin/flask --app app tokens refresh 2>&1 | logger -t $SERVICE-refresh

  # HTTP: same work through the running service (replace <CRON_TOKEN> with the value from .env;
  # the token is then visible in the crontab and in ps, so keep the file mode 600)
  */5 * * * * $APP_USER curl -fsS -m 330 -X POST -H 'X-Cron-Token: <CRON_TOKEN>' ${LOCAL_URL:-http://127.0.0.1:8000}/tasks/refresh 2>&1 | logger -t $SERVICE-refresh

nginx: include nginx-integration.conf in your server {} block (see docs/deploy.md).
EOF

exit "$refused"
