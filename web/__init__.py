"""The Flask app: dashboard, REST API, inbound webhooks. It never imports torch."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, jsonify, request

from core.config import get_settings

# Pages load nothing from elsewhere; email HTML is shown in a sandboxed iframe (srcdoc).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def create_app(config: dict | None = None) -> Flask:
    """The app; a ``SettingError`` when a setting makes it unsafe to serve (a weak key)."""
    from core import services
    from core.secret_key import flask_secret_key
    from web.auth.throttle import login_limits
    from web.extensions import api, csrf, limiter, limiter_storage_uri, login_manager

    settings = get_settings()
    login_limits()  # a malformed limit stops the app here, not at the first login
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=flask_secret_key(settings),
        # Room for base64 (Postmark's JSON) and form fields around the largest message.
        MAX_CONTENT_LENGTH=settings.max_message_bytes * 4 // 3 + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # Logins are permanent sessions that end with their server-side row.
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,
        API_TITLE="spamsift",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        RATELIMIT_STORAGE_URI=limiter_storage_uri(services.broker_url(settings)),
        # An unreachable Redis must not hold a request (webhooks go on without limits).
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 2, "socket_timeout": 2},
        # No X-RateLimit-* headers on every answer: each costs the limiter more Redis round
        # trips per webhook; a refusal says when to come back (Retry-After, below).
        RATELIMIT_HEADERS_ENABLED=False,
    )
    if config:
        app.config.update(config)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client address and scheme as the trusted proxies saw them (rate limits, logs,
        # local health checks); with no proxy configured X-Forwarded-* is ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,
                                x_proto=settings.trusted_proxies)

    from web.auth import blueprint as auth_blueprint
    from web.auth import load_user
    from web.dashboard import blueprint as dashboard_blueprint
    from web.health import blueprint as health_blueprint
    from web.metrics import blueprint as metrics_blueprint
    from web.metrics import count_requests
    from web.request_ids import track_request_ids
    from web.webhooks import blueprint as webhooks_blueprint
    import web.api

    track_request_ids(app)  # first: every later hook and view logs under the id
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.user_loader(load_user)
    limiter.init_app(app)
    api.init_app(app)
    web.api.register(api)

    app.register_blueprint(health_blueprint)
    app.register_blueprint(metrics_blueprint)
    count_requests(app)
    app.register_blueprint(auth_blueprint)
    app.register_blueprint(dashboard_blueprint)
    # Webhooks authenticate by the provider's signature, the API by bearer token: no CSRF.
    csrf.exempt(webhooks_blueprint)
    app.register_blueprint(webhooks_blueprint)
    for blueprint in web.api.BLUEPRINTS:
        csrf.exempt(blueprint)

    @app.errorhandler(413)
    def too_large(_error):
        return jsonify(error="request body over the size limit "
                             f"({app.config['MAX_CONTENT_LENGTH']} bytes)"), 413

    @app.errorhandler(429)
    def too_many(error):
        response = jsonify(error=f"rate limit exceeded: {error.description}")
        limit = getattr(error, "limit", None)  # flask-limiter's: its window bounds the wait
        response.headers["Retry-After"] = str(limit.limit.get_expiry() if limit else 60)
        return response, 429

    @login_manager.unauthorized_handler
    def unauthorized():
        from flask import redirect, url_for

        if request.path.startswith("/api/"):
            return jsonify(error="authentication required"), 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @app.before_request
    def protect_api_document():
        # The OpenAPI document is part of the API: it needs a token or a session too.
        from web.auth import read_scope_refusal

        if request.endpoint == "api-docs.openapi_json":
            return read_scope_refusal("this document")
        return None

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if settings.hsts_seconds:
            response.headers.setdefault("Strict-Transport-Security",
                                        f"max-age={settings.hsts_seconds}")
        return response

    return app
