"""Queries the dashboard and the API share: the mail list with filters, one email with its
latest verdict, and daily volume."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Date, and_, cast, func, select
from sqlalchemy.orm import Session, aliased

from core.models import Email, EmailStatus, Label, Prediction, Verdict


@dataclass
class MailFilter:
    label: Label | None = None
    unlabeled: bool = False
    verdict: Verdict | None = None
    status: EmailStatus | None = None
    sender: str | None = None  # substring of the address or domain
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # full-text search words


def latest_prediction_subquery():
    """Each email's newest prediction."""
    ranked = select(Prediction, func.row_number().over(
        partition_by=Prediction.email_id, order_by=Prediction.id.desc()).label("rank")
    ).subquery()
    return aliased(Prediction, ranked), ranked.c.rank


def list_emails(session: Session, filters: MailFilter, page: int, per_page: int
                ) -> tuple[list[tuple[Email, Prediction | None]], int]:
    latest, rank = latest_prediction_subquery()
    query = (select(Email, latest)
             .outerjoin(latest, and_(latest.email_id == Email.id, rank == 1)))
    conditions = []
    if filters.label is not None:
        conditions.append(Email.label == filters.label)
    if filters.unlabeled:
        conditions.append(Email.label.is_(None))
    if filters.verdict is not None:
        conditions.append(latest.verdict == filters.verdict)
    if filters.status is not None:
        conditions.append(Email.status == filters.status)
    if filters.sender:
        conditions.append(Email.sender.ilike(f"%{_escape_like(filters.sender)}%", escape="\\"))
    if filters.since is not None:
        conditions.append(Email.received_at >= filters.since)
    if filters.until is not None:
        conditions.append(Email.received_at < filters.until)
    if filters.text:
        conditions.append(Email.search_vector.op("@@")(
            func.websearch_to_tsquery("english", filters.text)))
    query = query.where(*conditions)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(query.order_by(Email.received_at.desc(), Email.id.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return [(row[0], row[1]) for row in rows], total


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def latest_prediction(session: Session, email_id: int) -> Prediction | None:
    return session.scalar(select(Prediction).where(Prediction.email_id == email_id)
                          .order_by(Prediction.id.desc()).limit(1))


def daily_volume(session: Session, days: int = 30) -> list[dict]:
    """Per day (received date, UTC): emails, verdicts, and the share called spam."""
    latest, rank = latest_prediction_subquery()
    day = cast(func.timezone("UTC", Email.received_at), Date).label("day")
    rows = session.execute(
        select(day, func.count(Email.id),
               func.count().filter(latest.verdict == Verdict.SPAM),
               func.count().filter(latest.verdict == Verdict.UNSURE),
               func.count().filter(latest.verdict == Verdict.HAM))
        .outerjoin(latest, and_(latest.email_id == Email.id, rank == 1))
        .where(Email.received_at >= func.now() - func.make_interval(0, 0, 0, days))
        .group_by(day).order_by(day)).all()
    counts = {row[0]: row[1:] for row in rows}
    today = session.scalar(select(cast(func.timezone("UTC", func.now()), Date)))
    out = []
    for offset in range(days - 1, -1, -1):  # every day of the period, quiet ones too
        day_ = today - timedelta(days=offset)
        total, spam, unsure, ham = counts.get(day_, (0, 0, 0, 0))
        judged = spam + unsure + ham
        out.append({"day": day_.isoformat(), "emails": total, "spam": spam, "unsure": unsure,
                    "ham": ham, "spam_rate": round(spam / judged, 4) if judged else None})
    return out


def verdict_channel(email_id: int) -> str:
    """The channel a trigger on predictions notifies for this email (migration 0004)."""
    return f"spamsift_prediction_{int(email_id)}"


def wait_for_prediction(email_id: int, wait_ms: int) -> Prediction | None:
    """The email's latest prediction, waiting up to ``wait_ms`` for one to be committed.

    The waiter LISTENs on the email's channel before it looks, so a verdict committed in
    between is not missed, and it sleeps until notified instead of polling. One pooled
    connection per waiter.
    """
    from core.db import get_engine

    deadline = time.monotonic() + max(wait_ms, 0) / 1000
    with get_engine().connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        driver = connection.connection.driver_connection
        channel = verdict_channel(email_id)
        driver.execute(f'LISTEN "{channel}"')
        try:
            with Session(bind=connection, expire_on_commit=False) as session:
                prediction = latest_prediction(session, email_id)
                while prediction is None and (remaining := deadline - time.monotonic()) > 0:
                    for _ in driver.notifies(timeout=remaining, stop_after=1):
                        pass
                    prediction = latest_prediction(session, email_id)
                if prediction is not None:
                    session.expunge(prediction)
                return prediction
        finally:
            driver.execute(f'UNLISTEN "{channel}"')
