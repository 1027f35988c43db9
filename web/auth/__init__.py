"""Login for the dashboard (session cookie) and bearer tokens for the API; roles."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, g, request
from flask_login import current_user

from core.auth import user_for_token
from core.db import session_scope
from core.models import Role, User

blueprint = Blueprint("auth", __name__)


class SessionUser:
    """What Flask-Login keeps for a logged-in user (a detached copy, no open session)."""

    def __init__(self, user: User) -> None:
        self.id = user.id
        self.username = user.username
        self.role = user.role
        self.is_active = user.is_active

    is_authenticated = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def get_id(self) -> str:
        return str(self.id)


def load_user(user_id: str) -> SessionUser | None:
    with session_scope() as session:
        user = session.get(User, int(user_id)) if user_id.isdigit() else None
        return SessionUser(user) if user is not None and user.is_active else None


def api_user() -> SessionUser | None:
    """The bearer token's user, or the logged-in dashboard user (for the dashboard's own
    calls, which carry the session cookie and a CSRF token)."""
    if "api_user" in g:
        return g.api_user
    header = request.headers.get("Authorization", "")
    user = None
    if header.lower().startswith("bearer "):
        with session_scope() as session:
            found = user_for_token(session, header[7:].strip())
            user = SessionUser(found) if found is not None else None
    elif current_user.is_authenticated and request.method in ("GET", "HEAD"):
        # The dashboard's own scripts read the API with the session cookie; anything that
        # changes state needs a token (the API is exempt from CSRF tokens).
        user = current_user._get_current_object()
    g.api_user = user
    return user


def api_auth(admin: bool = False):
    """Decorator for API views: 401 without credentials, 403 for viewers on admin actions."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            user = api_user()
            if user is None:
                abort(401, description="authentication required: an API bearer token")
            if admin and not user.is_admin:
                abort(403, description="this action needs the admin role")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def admin_required(view):
    """Dashboard views that change things: admins only."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            from flask import current_app

            return current_app.login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403, description="this action needs the admin role")
        return view(*args, **kwargs)

    return wrapper


from web.auth import views  # noqa: E402,F401  (registers the login routes)
