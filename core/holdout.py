"""The holdout set: a fixed share of each class of the labeled mail, set aside with its labels
as they were, never trained on. It is made once, when each class has enough labels, and
the labels it keeps do not follow later label changes: a burst of wrong or hostile feedback
cannot move the yardstick a retrained model is measured against."""

from __future__ import annotations

import math
import random

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import Settings
from core.models import Email, HoldoutEmail, Label

SEED = 0


def holdout_size(session: Session) -> dict[str, int]:
    """How many holdout emails of each label there are."""
    counts = dict(session.execute(select(HoldoutEmail.label, func.count())
                                  .group_by(HoldoutEmail.label)).all())
    return {label.value: counts.get(label, 0) for label in Label}


def ensure_holdout(session: Session, settings: Settings) -> dict[str, int]:
    """Make the holdout set if there is none and each class has enough labels; returns its
    size by label (zeros: not made yet)."""
    size = holdout_size(session)
    if any(size.values()):
        return size
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("holdout", 0))))
    size = holdout_size(session)  # made meanwhile by another worker?
    if any(size.values()):
        return size
    chosen: dict[Label, list[int]] = {}
    for label in Label:
        ids = list(session.scalars(select(Email.id).where(Email.label == label)
                                   .order_by(Email.id)))
        take = int(len(ids) * settings.holdout_share)
        if take < settings.holdout_min_per_class:
            return size
        chosen[label] = random.Random(f"{SEED}:{label.value}").sample(ids, take)
    session.add_all(HoldoutEmail(email_id=email_id, label=label)
                    for label, ids in chosen.items() for email_id in ids)
    session.flush()
    return holdout_size(session)


def needed_per_class(settings: Settings) -> int:
    """Labels of each class it takes to make the holdout set."""
    return math.ceil(settings.holdout_min_per_class / settings.holdout_share)


def not_held_out():
    """A condition on ``Email``: not in the holdout set (what training may read)."""
    return Email.id.not_in(select(HoldoutEmail.email_id))


def holdout_emails(session: Session) -> list[tuple[Email, Label]]:
    """The holdout emails with the labels the set keeps, by id."""
    return [(email, label) for email, label in session.execute(
        select(Email, HoldoutEmail.label).join(HoldoutEmail, HoldoutEmail.email_id == Email.id)
        .order_by(Email.id))]
