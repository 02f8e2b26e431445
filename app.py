"""The Flask application factory; `gunicorn app:app` and `flask --app app …` use the module-level `app`.

`app` is built on first access (PEP 562 module __getattr__), so importing this module has no side
effects: tests build their own apps with create_app(test_config).
"""

from __future__ import annotations

import re

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

import config
import database
from models.logs import configure_logging

_SAFE_PREFIX = re.compile(r"^/[A-Za-z0-9._~\-/]*$")


class PrefixMiddleware:
    """Serve under a path prefix: BASE_PATH from the config, or X-Script-Name from the proxy."""

    def __init__(self, wsgi_app, base_path: str):
        self.wsgi_app = wsgi_app
        self.base_path = base_path

    def __call__(self, environ, start_response):
        prefix = environ.get("HTTP_X_SCRIPT_NAME", "").strip() or self.base_path
        if prefix and _SAFE_PREFIX.match(prefix):
            prefix = "/" + prefix.strip("/")
            if prefix != "/":
                environ["SCRIPT_NAME"] = prefix
                path = environ.get("PATH_INFO", "")
                if path == prefix or path.startswith(prefix + "/"):
                    environ["PATH_INFO"] = path[len(prefix):] or "/"
        return self.wsgi_app(environ, start_response)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, then the environment (and .env), then `test_config`."""
    app = Flask(__name__)
    settings = config.defaults()
    if test_config is None:
        config.load_dotenv_file()
        settings.update(config.from_environ())
    else:
        settings.update(test_config)
    config.validate(settings)
    app.config.update(settings)
    app.config["JSON_AS_ASCII"] = False
    app.json.ensure_ascii = False
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    configure_logging(app.config["LOG_LEVEL"])

    app.wsgi_app = PrefixMiddleware(ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1),
                                    app.config["BASE_PATH"])

    db = database.init_app(app)
    from models.services import build

    app.extensions["services"] = build(app.config, db)

    from routes import admin, assets, bot, conferences, dialogs, health, install, tasks, ui
    from routes.common import register_error_handlers

    for blueprint in (health.bp, install.bp, ui.bp, admin.bp, tasks.bp, conferences.bp, bot.bp, dialogs.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    assets.init_app(app)
    tasks.init_cli(app)
    bot.init_app(app)

    if app.config["CORS_ORIGINS"]:
        from flask_cors import CORS

        origins = [o.strip() for o in app.config["CORS_ORIGINS"].split(",") if o.strip()]
        CORS(app, resources={r"/api/*": {"origins": origins}}, supports_credentials=False)

    @app.cli.command("check-config")
    def check_config():
        """Validate the settings (create_app already did) and make sure the database answers."""
        import click

        db.check_connection()
        click.echo(f"configuration ok: APP_ENV={app.config['APP_ENV']}, database={db.engine.dialect.name}, "
                   f"public_url={app.config['PUBLIC_URL'] or '(not set)'}")

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
                "base-uri 'none'; frame-ancestors 'self'"
            )
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
