"""Label changes: the email's label and a feedback row saying who changed it and when. A
person's label also removes the email's pseudo-label (self-training's), if it has one."""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlalchemy.orm import Session

from core.models import Email, Feedback, Label, PseudoLabel


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
    session.execute(delete(PseudoLabel).where(PseudoLabel.email_id == email.id))
    session.add(feedback)
    session.flush()
    return feedback
