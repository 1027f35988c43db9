"""Reading committed rows back in tests, each in its own short session (on ``engine``, else
the configured database)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from core.db import session_scope
from core.models import Email, EmailStatus, Prediction, TrainedModel


def email_count(engine: Engine | None = None) -> int:
    with session_scope(engine) as session:
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


def verdicts_by_email(engine: Engine | None = None) -> dict[int, list[int]]:
    """Each email's predictions, as the ids of the models that made them."""
    with session_scope(engine) as session:
        emails = session.scalars(select(Email.id)).all()
        rows = session.execute(select(Prediction.email_id, Prediction.model_id)
                               .order_by(Prediction.id)).all()
    found = {email_id: [] for email_id in emails}
    for email_id, model_id in rows:
        found[email_id].append(model_id)
    return found


def status_counts(engine: Engine | None = None) -> Counter[EmailStatus]:
    with session_scope(engine) as session:
        return Counter(dict(session.execute(
            select(Email.status, func.count()).group_by(Email.status)).all()))


def statuses(engine: Engine | None = None) -> set[EmailStatus]:
    return set(status_counts(engine))


def active_model_id(engine: Engine | None = None) -> int | None:
    with session_scope(engine) as session:
        return session.scalar(select(TrainedModel.id).where(TrainedModel.is_active))


def each_classified_once(engine: Engine | None = None) -> tuple[bool, str]:
    """Whether every email is classified with exactly one prediction, from the active model;
    and if not, what is off (for an assertion message)."""
    model_id = active_model_id(engine)
    counts = status_counts(engine)
    verdicts = verdicts_by_email(engine)
    off = {email_id: models for email_id, models in verdicts.items() if models != [model_id]}
    problems = []
    if model_id is None:
        problems.append("no active model")
    if set(counts) != {EmailStatus.CLASSIFIED}:
        problems.append(f"statuses {dict(counts)}")
    if off:
        problems.append(f"{len(off)} of {len(verdicts)} emails without exactly one "
                        f"prediction from model {model_id}, e.g. "
                        f"{dict(list(off.items())[:5])}")
    return not problems, "; ".join(problems) or f"{len(verdicts)} emails classified once"
