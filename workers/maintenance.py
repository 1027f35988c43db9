"""Periodic upkeep: nothing stored is ever left behind by a lost broker message."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from sqlalchemy import func, select, update

from core.config import get_settings
from core.models import Email, EmailStatus
from workers.app import PARSE_EMAILS, RECONCILE, DbTask, send_in_batches

log = logging.getLogger(__name__)


def stuck_email_ids(session, older_than_seconds: int, limit: int) -> list[int]:
    """Emails still ``received`` after the grace period: their task was lost or never sent."""
    cutoff = func.now() - timedelta(seconds=older_than_seconds)
    return list(session.scalars(
        select(Email.id)
        .where(Email.status == EmailStatus.RECEIVED, Email.updated_at < cutoff)
        .order_by(Email.id)
        .limit(limit)
    ))


@shared_task(name=RECONCILE, base=DbTask, bind=True)
def reconcile(self: DbTask, older_than_seconds: int | None = None, limit: int = 10_000) -> int:
    """Re-enqueue emails stuck in ``received`` for longer than the grace period."""
    settings = get_settings()
    if older_than_seconds is None:
        older_than_seconds = settings.reconcile_after_seconds
    ids = stuck_email_ids(self.session, older_than_seconds, limit)
    if not ids:
        return 0
    # Touch the rows so the next run waits a full grace period before sending them again.
    self.session.execute(update(Email).where(Email.id.in_(ids)).values(updated_at=func.now()))
    self.session.commit()
    send_in_batches(PARSE_EMAILS, ids, settings.enqueue_batch_size)
    log.info("reconcile: re-enqueued %d emails", len(ids))
    return len(ids)
