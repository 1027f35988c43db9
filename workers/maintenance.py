"""Periodic upkeep: nothing stored is ever left behind by a lost broker message."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from sqlalchemy import func, select, update

from core.config import get_settings
from core.models import Email, EmailStatus
from workers.app import EMBED_EMAILS, PARSE_EMAILS, RECONCILE, DbTask, send_in_batches

log = logging.getLogger(__name__)


# Each unfinished status and the task that moves an email on from it.
NEXT_STEP = {EmailStatus.RECEIVED: PARSE_EMAILS, EmailStatus.PARSED: EMBED_EMAILS}


def stuck_email_ids(session, status: EmailStatus, older_than_seconds: int, limit: int
                    ) -> list[int]:
    """Emails still in ``status`` after the grace period: their task was lost or never sent."""
    cutoff = func.now() - timedelta(seconds=older_than_seconds)
    return list(session.scalars(
        select(Email.id)
        .where(Email.status == status, Email.updated_at < cutoff)
        .order_by(Email.id)
        .limit(limit)
    ))


@shared_task(name=RECONCILE, base=DbTask, bind=True)
def reconcile(self: DbTask, older_than_seconds: int | None = None, limit: int = 10_000) -> int:
    """Re-enqueue emails stuck before embedding for longer than the grace period."""
    settings = get_settings()
    if older_than_seconds is None:
        older_than_seconds = settings.reconcile_after_seconds
    sent = 0
    for status, task_name in NEXT_STEP.items():
        ids = stuck_email_ids(self.session, status, older_than_seconds, limit)
        if not ids:
            continue
        # Touch the rows so the next run waits a full grace period before sending them again.
        self.session.execute(update(Email).where(Email.id.in_(ids))
                             .values(updated_at=func.now()))
        self.session.commit()
        send_in_batches(task_name, ids, settings.enqueue_batch_size)
        log.info("reconcile: re-enqueued %d %s emails", len(ids), status.value)
        sent += len(ids)
    return sent
