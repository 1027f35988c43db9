"""Users (argon2 password hashes) and API bearer tokens (only their SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import ApiToken, Role, User

TOKEN_PREFIX = "ss_"
_hasher = PasswordHasher()


class AuthError(ValueError):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(session: Session, username: str, password: str, role: Role) -> User:
    if len(password) < 8:
        raise AuthError("passwords need at least 8 characters")
    if session.scalar(select(User).where(User.username == username)):
        raise AuthError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
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


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_api_token(session: Session, user: User, name: str) -> str:
    """A new token; the plain value is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=token_digest(token),
                         prefix=token[:10]))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user owning an unrevoked token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token),
                                                ApiToken.revoked_at.is_(None)))
    if row is None or not row.user.is_active:
        return None
    row.last_used_at = func.now()
    return row.user


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a, b)
