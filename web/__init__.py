"""The Flask app: dashboard, REST API, inbound webhooks. It never imports torch."""

from __future__ import annotations

from flask import Flask

from core.config import get_settings


def create_app(config: dict | None = None) -> Flask:
    settings = get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # Room for base64 (Postmark's JSON) and form fields around the largest message.
        MAX_CONTENT_LENGTH=settings.max_message_bytes * 4 // 3 + 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if config:
        app.config.update(config)

    from web.health import blueprint as health_blueprint
    from web.webhooks import blueprint as webhooks_blueprint

    app.register_blueprint(health_blueprint)
    app.register_blueprint(webhooks_blueprint)

    @app.errorhandler(413)
    def too_large(_error):
        return {"error": "request body over the size limit "
                         f"({app.config['MAX_CONTENT_LENGTH']} bytes)"}, 413
    return app
