"""Flask extensions, created here and bound to the app in ``create_app`` (init_app)."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_smorest import Api
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
# Limits fail open when Redis is down (webhooks must never lose mail); logins do not: they
# are counted by web.auth.throttle, which refuses what it cannot count.
limiter = Limiter(key_func=get_remote_address, default_limits=[], swallow_errors=True)
api = Api()


def limiter_storage_uri(broker_url: str) -> str:
    """Rate-limit counters live in the broker's Redis (``redis+unix://`` for a socket)."""
    if broker_url.startswith("redis+socket://"):
        return "redis+unix://" + broker_url[len("redis+socket://"):]
    return broker_url
