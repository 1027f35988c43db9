"""The Flask app: dashboard, REST API, inbound webhooks. It never imports torch."""

from __future__ import annotations

from flask import Flask

from core.config import get_settings


def create_app(config: dict | None = None) -> Flask:
    settings = get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_message_bytes + 1024 * 1024,  # room for form fields
        JSON_SORT_KEYS=False,
    )
    if config:
        app.config.update(config)

    from web.health import blueprint as health_blueprint

    app.register_blueprint(health_blueprint)
    return app
