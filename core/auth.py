"""Users (argon2 password hashes), API bearer tokens with scopes, and dashboard login
sessions. Of tokens and session ids only the SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from core.models import ApiToken, LoginSession, Role, Scope, User

TOKEN_PREFIX = "ss_"
MIN_PASSWORD_CHARS = 8
_hasher = PasswordHasher()
# A token's last use is recorded to this precision: writing it on every request would give
# each webhook delivery a second commit (a disk flush) before the one that stores the mail.
LAST_USED_PRECISION = timedelta(minutes=1)

# What each role may grant a token (and what a dashboard session of that role may do).
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.VIEWER: frozenset({Scope.READ}),
}
# A token made without naming scopes: what the role could do with tokens before scopes.
DEFAULT_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset({Scope.ADMIN}),
    Role.VIEWER: frozenset({Scope.READ}),
}


class AuthError(ValueError):
    pass


# --- Users -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"passwords need at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(session: Session, username: str, password: str, role: Role) -> User:
    password_hash = hash_password(password)
    if session.scalar(select(User).where(User.username == username)):
        raise AuthError(f"user {username!r} already exists")
    user = User(username=username, password_hash=password_hash, role=role)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AuthError(f"no user {username!r}")
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username, User.is_active))
    if user is None:
        _hasher.hash(password)  # same work either way: no timing hint that the user exists
        return None
    if not verify_password(user.password_hash, password):
        return None
    user.last_login_at = func.now()
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """A new password; every dashboard session of the user ends."""
    user.password_hash = hash_password(password)
    end_login_sessions(session, user)


def disable_user(session: Session, user: User) -> None:
    """No more logins; the user's sessions end and tokens are revoked."""
    user.is_active = False
    end_login_sessions(session, user)
    session.execute(update(ApiToken).where(ApiToken.user_id == user.id,
                                           ApiToken.revoked_at.is_(None))
                    .values(revoked_at=func.now()))


# --- API tokens --------------------------------------------------------------------------


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_scopes(text: str) -> frozenset[Scope]:
    """``"ingest,read"`` as scopes; an AuthError names the unknown ones."""
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    unknown = names - {scope.value for scope in Scope}
    if unknown or not names:
        raise AuthError(f"unknown scope(s) {', '.join(sorted(unknown)) or '(none given)'}: "
                        f"choose from {', '.join(scope.value for scope in Scope)}")
    return frozenset(Scope(name) for name in names)


def grants(scopes: Iterable[Scope], needed: Scope) -> bool:
    scopes = set(scopes)
    return Scope.ADMIN in scopes or needed in scopes


def create_api_token(session: Session, user: User, name: str,
                     scopes: Iterable[Scope | str] | None = None,
                     expires_days: int | None = None) -> str:
    """A new token; the plain value is returned once and never stored. Scopes default to
    the role's (admin for an admin, read for a viewer) and may not exceed what it allows."""
    chosen = (frozenset(Scope(scope) for scope in scopes) if scopes is not None
              else DEFAULT_SCOPES[user.role])
    beyond = chosen - ROLE_SCOPES[user.role]
    if not chosen or beyond:
        allowed = ", ".join(sorted(scope.value for scope in ROLE_SCOPES[user.role]))
        raise AuthError(f"a {user.role.value}'s token can only have the scopes: {allowed}")
    if not user.is_active:
        raise AuthError(f"user {user.username!r} is disabled")
    if expires_days is not None and expires_days < 1:
        raise AuthError("a token must last at least 1 day")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(
        user_id=user.id, name=name, token_hash=token_digest(token), prefix=token[:10],
        scopes=sorted(scope.value for scope in chosen),
        expires_at=func.now() + timedelta(days=expires_days) if expires_days else None))
    session.flush()
    return token


@dataclass(frozen=True)
class TokenGrant:
    """Who a presented token acts for, and what it may do now (its scopes, cut down to what
    the user's current role allows)."""

    user: User
    scopes: frozenset[Scope]

    def allows(self, needed: Scope) -> bool:
        return grants(self.scopes, needed)


def _live(model):
    return (model.revoked_at.is_(None),
            or_(model.expires_at.is_(None), model.expires_at > func.now()))


def token_grant(session: Session, token: str) -> TokenGrant | None:
    """The grant of an unrevoked, unexpired token of an active user, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).options(joinedload(ApiToken.user))
                         .where(ApiToken.token_hash == token_digest(token), *_live(ApiToken)))
    if row is None or not row.user.is_active:
        return None
    if row.last_used_at is None or (
            datetime.now(timezone.utc) - row.last_used_at >= LAST_USED_PRECISION):
        row.last_used_at = func.now()
    scopes = frozenset(Scope(scope) for scope in row.scopes)
    if Scope.ADMIN in scopes:
        scopes = frozenset(Scope)  # "everything", as far as the role still allows
    return TokenGrant(row.user, scopes & ROLE_SCOPES[row.user.role])


def list_tokens(session: Session, username: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).join(User).order_by(ApiToken.id)
    if username is not None:
        query = query.where(User.username == username)
    return list(session.scalars(query))


def revoke_token(session: Session, id_or_prefix: str) -> ApiToken:
    """Revoke a token named by its id or its prefix (as ``tokens list`` shows them)."""
    column = ApiToken.id if id_or_prefix.isdigit() else ApiToken.prefix
    value = int(id_or_prefix) if id_or_prefix.isdigit() else id_or_prefix
    rows = session.scalars(select(ApiToken).where(column == value)).all()
    if not rows:
        raise AuthError(f"no token {id_or_prefix!r}")
    if len(rows) > 1:
        raise AuthError(f"{len(rows)} tokens have the prefix {id_or_prefix!r}: revoke by id")
    [row] = rows
    if row.revoked_at is None:
        row.revoked_at = func.now()
        session.flush()
    return row


# --- Dashboard login sessions --------------------------------------------------------------


def start_login_session(session: Session, user: User, hours: int) -> str:
    """A new session id for the cookie, valid for ``hours``; only its hash is stored. The
    user's ended sessions are cleared away."""
    session.execute(delete(LoginSession).where(
        LoginSession.user_id == user.id,
        or_(LoginSession.revoked_at.is_not(None), LoginSession.expires_at <= func.now())))
    session_id = secrets.token_urlsafe(32)
    session.add(LoginSession(user_id=user.id, token_hash=token_digest(session_id),
                             expires_at=func.now() + timedelta(hours=hours)))
    session.flush()
    return session_id


def login_session_user(session: Session, session_id: str) -> User | None:
    """The active user of a live (not ended, not expired) login session, or None."""
    return session.scalar(select(User).join(LoginSession).where(
        LoginSession.token_hash == token_digest(session_id), *_live(LoginSession),
        User.is_active))


def end_login_session(session: Session, session_id: str) -> None:
    session.execute(update(LoginSession).where(
        LoginSession.token_hash == token_digest(session_id), LoginSession.revoked_at.is_(None))
        .values(revoked_at=func.now()))


def end_login_sessions(session: Session, user: User) -> None:
    session.execute(update(LoginSession).where(
        LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=func.now()))


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a, b)
