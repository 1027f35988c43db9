"""Label changes: the email's label and a feedback row saying who changed it and when."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.orm import Session

from core.models import Email, Feedback, Label


def set_label(session: Session, email: Email, label: Label, user_id: int | None,
              source: str) -> Feedback | None:
    """Record a label; nothing is written when the email already has it."""
    if email.label == label:
        return None
    feedback = Feedback(email_id=email.id, old_label=email.label, new_label=label,
                        user_id=user_id, source=source)
    email.label = label
    email.label_source = source
    email.labeled_by_id = user_id
    email.labeled_at = func.now()
    session.add(feedback)
    session.flush()
    return feedback
