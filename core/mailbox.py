"""Queries the dashboard and the API share: the mail list with filters, daily volume, and
waiting for an email's verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from core.models import Email, EmailStatus, Label, Prediction, Verdict
from core.verdicts import verdict_alias, verdict_id_of


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


def list_emails(session: Session, filters: MailFilter, page: int, per_page: int
                ) -> tuple[list[tuple[Email, Prediction | None]], int]:
    verdict, on_verdict = verdict_alias()
    query = select(Email, verdict).outerjoin(verdict, on_verdict)
    conditions = []
    if filters.label is not None:
        conditions.append(Email.label == filters.label)
    if filters.unlabeled:
        conditions.append(Email.label.is_(None))
    if filters.verdict is not None:
        conditions.append(verdict.verdict == filters.verdict)
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


def unindexed_count(session: Session, space: str) -> int:
    """Emails with a verdict that search by meaning cannot find yet (indexing follows)."""
    return session.scalar(select(func.count()).select_from(Email).where(
        Email.status == EmailStatus.CLASSIFIED, Email.indexed_with.is_distinct_from(space)))


def daily_volume(session: Session, days: int = 30) -> list[dict]:
    """Per day (received date, UTC): emails, verdicts, and the share called spam."""
    verdict, on_verdict = verdict_alias()
    day = cast(func.timezone("UTC", Email.received_at), Date).label("day")
    rows = session.execute(
        select(day, func.count(Email.id),
               func.count().filter(verdict.verdict == Verdict.SPAM),
               func.count().filter(verdict.verdict == Verdict.UNSURE),
               func.count().filter(verdict.verdict == Verdict.HAM))
        .outerjoin(verdict, on_verdict)
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
    """The channel notified when this email's verdict is set or moved (migration 0006)."""
    return f"spamsift_prediction_{int(email_id)}"


def wait_for_prediction(email_id: int, wait_ms: int) -> Prediction | None:
    """The email's verdict, waiting up to ``wait_ms`` for one to be committed.

    The waiter LISTENs on the email's channel before it looks, so a verdict committed in
    between is not missed, and it sleeps until notified instead of polling. It reads only the
    verdict pointer until there is one. One pooled connection per waiter.
    """
    from core.db import get_engine

    deadline = time.monotonic() + max(wait_ms, 0) / 1000
    with get_engine().connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        driver = connection.connection.driver_connection
        channel = verdict_channel(email_id)
        driver.execute(f'LISTEN "{channel}"')
        try:
            prediction_id = verdict_id_of(connection, email_id)
            while prediction_id is None and (remaining := deadline - time.monotonic()) > 0:
                for _ in driver.notifies(timeout=remaining, stop_after=1):
                    pass
                prediction_id = verdict_id_of(connection, email_id)
            if prediction_id is None:
                return None
            with Session(bind=connection, expire_on_commit=False) as session:
                prediction = session.get(Prediction, prediction_id)
                if prediction is not None:
                    session.expunge(prediction)
                return prediction
        finally:
            driver.execute(f'UNLISTEN "{channel}"')
