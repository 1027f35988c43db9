"""Reading committed rows back in tests, each in its own short session."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import session_scope
from core.models import Email


def email_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Email))


def stored_email(email_id: int) -> Email:
    with session_scope() as session:
        return session.get(Email, email_id)
