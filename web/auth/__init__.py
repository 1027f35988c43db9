"""Login for the dashboard (server-side sessions) and bearer tokens with scopes for the API."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, g, jsonify, request
from flask_login import current_user
from sqlalchemy.exc import DBAPIError

from core.auth import ROLE_SCOPES, grants, login_session_user, token_grant
from core.db import session_scope
from core.models import Role, Scope, User

blueprint = Blueprint("auth", __name__)


class SessionUser:
    """Who a request acts for (a detached copy, no open session): a dashboard login, whose
    id is the login session's id, or an API token's user with the token's scopes."""

    def __init__(self, user: User, scopes: frozenset[Scope], session_id: str = "") -> None:
        self.id = user.id
        self.username = user.username
        self.role = user.role
        self.is_active = user.is_active
        self.scopes = scopes
        self.session_id = session_id

    is_authenticated = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def allows(self, needed: Scope) -> bool:
        return grants(self.scopes, needed)

    def get_id(self) -> str:
        # What Flask-Login keeps in the cookie: the login session, checked on every request.
        return self.session_id


def dashboard_user(user: User, session_id: str) -> SessionUser:
    return SessionUser(user, ROLE_SCOPES[user.role], session_id)


def load_user(session_id: str) -> SessionUser | None:
    """The user of a live login session; fails closed (503) when the database is down."""
    try:
        with session_scope() as session:
            user = login_session_user(session, session_id)
            return dashboard_user(user, session_id) if user is not None else None
    except DBAPIError:
        abort(503, description="database unavailable; try again shortly")


def read_scope_refusal(what: str):
    """None when the request carries a token (or session) with the read scope; else the
    401 or 403 answer, saying ``what`` needs it."""
    user = api_user()
    if user is None:
        return jsonify(error="authentication required: an API bearer token"), 401
    if not user.allows(Scope.READ):
        return jsonify(error=f"{what} needs the read scope"), 403
    return None


def api_user() -> SessionUser | None:
    """The bearer token's user, or the logged-in dashboard user (for the dashboard's own
    calls, which carry the session cookie and a CSRF token)."""
    if "api_user" in g:
        return g.api_user
    header = request.headers.get("Authorization", "")
    user = None
    if header.lower().startswith("bearer "):
        try:
            with session_scope() as session:
                grant = token_grant(session, header[7:].strip())
                user = SessionUser(grant.user, grant.scopes) if grant is not None else None
        except DBAPIError:
            abort(503, description="database unavailable; try again shortly")
    elif current_user.is_authenticated and request.method in ("GET", "HEAD"):
        # The dashboard's own scripts read the API with the session cookie; anything that
        # changes state needs a token (the API is exempt from CSRF tokens).
        user = current_user._get_current_object()
    g.api_user = user
    return user


def api_auth(admin: bool = False, scope: Scope | None = None):
    """Decorator for API views: 401 without credentials, 403 without the scope the view
    needs (``scope``; by default admin for admin actions, else read)."""
    needed = scope or (Scope.ADMIN if admin else Scope.READ)

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            user = api_user()
            if user is None:
                abort(401, description="authentication required: an API bearer token")
            if not user.allows(needed):
                abort(403, description=f"this action needs the {needed.value} scope")
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
