"""The Flask application factory; `gunicorn app:app` and `flask --app app …` use the module-level `app`.

`app` is built on first access (PEP 562 module __getattr__), so importing this module has no side
effects: tests build their own apps with create_app(test_config).
"""

from __future__ import annotations

import re

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

import config
import database
from models.logs import configure_logging

_SAFE_PREFIX = re.compile(r"^/[A-Za-z0-9._~\-/]*$")
# The largest request body, the same as nginx-integration.conf's client_max_body_size: 413 beyond it.
MAX_BODY_BYTES = 10 * 1024 * 1024
# Token-protected JSON APIs that customers' other services may call from a browser (CORS_ORIGINS). The
# iframe UI's own API (/api/session, /api/conferences, …) is same-origin and gets no CORS headers.
CORS_RESOURCES = (r"/api/admin/*", r"/api/dialogs*")
# Pages that are not framed by a portal: only the app itself may frame them.
DEFAULT_HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'self'"
)
# Anything else (JSON, CSV, assets): nothing to run, nothing to frame.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


class PrefixMiddleware:
    """Serve under a path prefix, removing it from the path at most once.

    Behind trusted proxies (TRUSTED_PROXIES > 0) the prefix comes from X-Forwarded-Prefix, or X-Script-Name
    for older nginx snippets. Such a proxy has already removed the prefix from the path, so the prefix only
    becomes SCRIPT_NAME (werkzeug ProxyFix x_prefix semantics): stripping it again would let
    /prefix/prefix/metrics slip past the proxy's allow-list as /metrics. Without a proxy prefix, BASE_PATH
    is stripped once from paths under it; other paths (cron or health checks on 127.0.0.1) are served as is.
    """

    def __init__(self, wsgi_app, base_path: str, trusted_proxies: int):
        self.wsgi_app = wsgi_app
        self.base_path = base_path.rstrip("/")
        self.trusted_proxies = trusted_proxies

    def _proxy_prefix(self, environ) -> str | None:
        """The prefix our own proxy sent (None when it sent none); a malformed one counts as the root."""
        forwarded = environ.get("HTTP_X_FORWARDED_PREFIX")
        if forwarded is not None:
            # One value per proxy, the nearest last: take the one our outermost trusted proxy wrote.
            values = [v.strip() for v in forwarded.split(",")]
            if len(values) < self.trusted_proxies:
                return ""
            value = values[-self.trusted_proxies]
        elif "HTTP_X_SCRIPT_NAME" in environ:
            value = environ["HTTP_X_SCRIPT_NAME"].strip()
        else:
            return None
        if not value or not _SAFE_PREFIX.match(value):
            return ""
        return "/" + value.strip("/") if value.strip("/") else ""

    def __call__(self, environ, start_response):
        prefix = self._proxy_prefix(environ) if self.trusted_proxies else None
        if prefix is not None:
            environ["SCRIPT_NAME"] = prefix
        elif self.base_path:
            path = environ.get("PATH_INFO", "")
            if path == self.base_path or path.startswith(self.base_path + "/"):
                environ["PATH_INFO"] = path[len(self.base_path) :] or "/"
            environ["SCRIPT_NAME"] = self.base_path
        return self.wsgi_app(environ, start_response)


ROW_ID_MAX = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL


def decimal_at_most(limit: int) -> str:
    """A regular expression for the decimal numbers from 0 to `limit` (leading zeros allowed)."""
    digits = str(limit)
    parts = [rf"\d{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, ch in enumerate(digits):
        lowest = 1 if i == 0 and len(digits) > 1 else 0
        if int(ch) > lowest:
            rest = len(digits) - i - 1
            parts.append(f"{digits[:i]}[{lowest}-{int(ch) - 1}]" + (rf"\d{{{rest}}}" if rest else ""))
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


class RowIdConverter(IntegerConverter):
    """`<int:…>` in URLs, at most ROW_ID_MAX: a larger number names no row, so the URL is a 404.

    Unbounded, such a number reached the database and failed there with a 500 and a traceback (SQLite
    binds at most 2**63 - 1, PostgreSQL's INTEGER 2**31 - 1). The bound is in the pattern, not only in
    `max`: werkzeug checks `max` after the method, so PUT /api/conferences/<too big> would be a 405.
    """

    regex = decimal_at_most(ROW_ID_MAX)


class QueryStringGuard:
    """Percent-encode bytes outside ASCII in the raw query string.

    werkzeug decodes the query string strictly, so bytes that are not UTF-8 would raise on every read of
    request.args, error pages included (500). Quoted, they read as the literal text `%ED`, as werkzeug
    already does for form bodies; valid UTF-8 reads the same either way.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if not query.isascii():
            raw = query.encode("latin-1", "replace")  # WSGI hands bytes over as latin-1 text
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                environ["QUERY_STRING"] = "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)
        return self.wsgi_app(environ, start_response)


def wrap_wsgi(wsgi_app, base_path: str, trusted_proxies: int):
    """The app behind its proxies: forwarded headers only from TRUSTED_PROXIES hops, then the prefix."""
    wsgi_app = QueryStringGuard(wsgi_app)
    if trusted_proxies:
        wsgi_app = ProxyFix(wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies, x_host=trusted_proxies)
    return PrefixMiddleware(wsgi_app, base_path, trusted_proxies)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, then the environment (and .env), then `test_config`."""
    app = Flask(__name__)
    app.url_map.converters["int"] = RowIdConverter  # before any blueprint adds its rules
    settings = config.defaults()
    if test_config is None:
        config.load_dotenv_file()
        settings.update(config.from_environ())
    else:
        settings.update(test_config)
    config.validate(settings)
    app.config.update(settings)
    app.json.ensure_ascii = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    configure_logging(app.config["LOG_LEVEL"])
    config.log_aliases(app.config)

    app.wsgi_app = wrap_wsgi(app.wsgi_app, app.config["BASE_PATH"], int(app.config["TRUSTED_PROXIES"]))

    db = database.init_app(app)
    from models.backup import hold_database

    app.extensions["db_hold"] = hold_database(app, db.url)  # restores refuse while it is held
    from models.services import build
    from routes.i18n import translate

    app.extensions["services"] = build(app.config, db, translate=translate)

    from models.metrics import build_registry
    from models.ratelimit import RateLimit
    from models.throttle import AuthThrottle
    from routes import admin, assets, bot, conferences, dialogs, health, install, tasks, ui
    from routes.common import register_error_handlers, register_rate_limit

    app.extensions["metrics_registry"] = build_registry(app.extensions["services"])
    app.extensions["auth_throttle"] = AuthThrottle(
        db,
        int(app.config["AUTH_THROTTLE_ATTEMPTS"]),
        int(app.config["AUTH_THROTTLE_WINDOW_SECONDS"]),
        app.extensions["services"].audit.record,
    )

    app.extensions["rate_limit"] = RateLimit(
        db, int(app.config["RATE_LIMIT_REQUESTS"]), int(app.config["RATE_LIMIT_WINDOW_SECONDS"])
    )
    register_rate_limit(app)

    for blueprint in (health.bp, install.bp, ui.bp, admin.bp, tasks.bp, conferences.bp, bot.bp, dialogs.bp):
        app.register_blueprint(blueprint)
    from routes import connections

    app.register_blueprint(connections.bp)
    register_error_handlers(app)
    assets.init_app(app)
    tasks.init_cli(app)
    from routes import backup

    backup.init_cli(app)  # `flask db backup|restore`
    from routes import doctor

    doctor.init_cli(app)
    bot.init_app(app)
    from routes.oauth_flow import bp as oauth_flow_bp  # the code flow (/auth/bitrix24), outside the frame

    app.register_blueprint(oauth_flow_bp)
    from routes import legacy_api

    app.register_blueprint(legacy_api.bp)  # the seeds' URLs under their old names

    if app.config["CORS_ORIGINS"]:
        from flask_cors import CORS

        origins = [o.strip() for o in app.config["CORS_ORIGINS"].split(",") if o.strip()]
        # No cookies or other credentials cross origins: the callers send X-API-Token, so the answer never
        # carries Access-Control-Allow-Credentials, and config.validate refuses "*" as an origin.
        CORS(
            app,
            resources={path: {"origins": origins} for path in CORS_RESOURCES},
            supports_credentials=False,
            allow_headers=["X-API-Token", "Content-Type"],
            max_age=600,
        )

    @app.cli.command("check-config")
    def check_config():
        """Validate the settings (create_app already did) and make sure the database answers."""
        import click

        db.check_connection()
        click.echo(
            f"configuration ok: APP_ENV={app.config['APP_ENV']}, database={db.engine.dialect.name}, "
            f"public_url={config.display_url(app.config['PUBLIC_URL']) or '(not set)'}"
        )

    @app.after_request
    def _security_headers(response):
        """On every response, errors included; iframe pages already carry their own CSP (routes/frame.py)."""
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if "Content-Security-Policy" not in response.headers:
            html = response.mimetype == "text/html"
            response.headers["Content-Security-Policy"] = DEFAULT_HTML_CSP if html else DEFAULT_CSP
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def __getattr__(name: str):
    if name in ("app", "application"):
        global app
        app = create_app()
        return app
    raise AttributeError(name)
