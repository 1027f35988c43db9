"""Reading committed rows back in tests, each in its own short session."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import session_scope
from core.models import Email, EmailStatus


def email_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Email))


def stored_email(email_id: int) -> Email:
    with session_scope() as session:
        return session.get(Email, email_id)


def processed_emails(count: int) -> list[Email] | None:
    """The emails once there are ``count`` and the pipeline is done with each (parsed and
    judged if a model is active, and indexed for search); None before."""
    with session_scope() as session:
        emails = session.scalars(select(Email).order_by(Email.id)).all()
    done = [e for e in emails if e.status in (EmailStatus.PARSED, EmailStatus.CLASSIFIED)
            and e.indexed_with is not None]
    return emails if len(emails) == count and len(done) == count else None
