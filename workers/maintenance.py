"""Periodic upkeep: nothing stored is ever left behind by a lost broker message.

The reconciler re-sends the next step of every email that has not moved for the grace period
(``SPAMSIFT_RECONCILE_AFTER_SECONDS``), and of every upload whose import never started. Each
re-send doubles the wait before the next one; after ``SPAMSIFT_RECONCILE_MAX_RESENDS``
re-sends without progress the email or upload is marked failed with the reason, and failed
mail is never sent again. Emails embedded while no model was active wait for one: they are
sent to be classified as soon as a model becomes active (``classify_waiting``).
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta

from celery import shared_task
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.config import Settings, get_settings
from core.jobs import finish_job, uploads_dir
from core.models import Email, EmailStatus, Job, JobState
from core.registry import active_model
from workers.app import (
    CLASSIFY_WAITING,
    EMBED_EMAILS,
    IMPORT_UPLOAD,
    PARSE_EMAILS,
    RECONCILE,
    DbTask,
    send,
    send_in_batches,
)

log = logging.getLogger(__name__)


# Each unfinished status and the task that moves an email on from it (``embed_emails``
# embeds what has no vectors yet, then classifies the batch with the active model).
NEXT_STEP = {EmailStatus.RECEIVED: PARSE_EMAILS, EmailStatus.PARSED: EMBED_EMAILS,
             EmailStatus.EMBEDDED: EMBED_EMAILS}


def stuck_emails(session: Session, status: EmailStatus, older_than_seconds: int, limit: int
                 ) -> list[tuple[int, int]]:
    """(id, resends) of emails still in ``status`` after their grace period, which doubles
    with each re-send: their task was lost, never sent, or keeps failing."""
    grace = func.make_interval(0, 0, 0, 0, 0, 0,
                               older_than_seconds * func.power(2, Email.resends))
    return [tuple(row) for row in session.execute(
        select(Email.id, Email.resends)
        .where(Email.status == status, Email.updated_at < func.now() - grace)
        .order_by(Email.id)
        .limit(limit)
    )]


def _resend_emails(session: Session, status: EmailStatus, older_than_seconds: int, limit: int,
                   settings: Settings) -> int:
    rows = stuck_emails(session, status, older_than_seconds, limit)
    worn = [email_id for email_id, resends in rows
            if resends >= settings.reconcile_max_resends]
    due = [email_id for email_id, resends in rows if resends < settings.reconcile_max_resends]
    if worn:
        session.execute(update(Email).where(Email.id.in_(worn)).values(
            status=EmailStatus.FAILED,
            status_message=f"gave up after {settings.reconcile_max_resends} re-sends: still "
                           f"{status.value} (see the worker logs)"))
        log.error("reconcile: gave up on %d %s emails, e.g. %s", len(worn), status.value,
                  worn[:5])
    if due:
        # Touch the rows so the next re-send waits twice as long as this one did.
        session.execute(update(Email).where(Email.id.in_(due))
                        .values(updated_at=func.now(), resends=Email.resends + 1))
    session.commit()
    if due:
        send_in_batches(NEXT_STEP[status], due, settings.enqueue_batch_size)
        log.info("reconcile: re-enqueued %d %s emails", len(due), status.value)
    return len(due)


def _resend_uploads(session: Session, older_than_seconds: int, settings: Settings) -> int:
    """Re-send the dashboard uploads whose import never started; fail those whose file is
    gone. ``import_upload`` runs a job once, so a re-send that races the first is harmless."""
    now = session.scalar(select(func.now()))
    jobs = session.scalars(select(Job).where(
        Job.kind == "import", Job.state == JobState.QUEUED, Job.params.has_key("upload"),
        Job.created_at < now - timedelta(seconds=older_than_seconds))).all()
    to_send = []
    for job in jobs:
        resends = job.params.get("resends", 0)
        if job.created_at > now - timedelta(seconds=older_than_seconds * 2 ** resends):
            continue
        path = uploads_dir() / job.params["upload"]
        if not path.is_file() or resends >= settings.reconcile_max_resends:
            finish_job(session, job, JobState.FAILED, message=(
                f"not started after {resends} re-sends" if path.is_file()
                else "not started, and the uploaded file is gone") + ": upload it again")
            shutil.rmtree(path.parent, ignore_errors=True)
        else:
            job.params = {**job.params, "resends": resends + 1}
            to_send.append((job.id, str(path), job.params.get("label")))
    session.commit()
    for job_id, path, label in to_send:
        send(IMPORT_UPLOAD, [job_id, path], {"label": label})
        log.info("reconcile: re-enqueued upload job %s", job_id)
    return len(to_send)


@shared_task(name=RECONCILE, base=DbTask, bind=True)
def reconcile(self: DbTask, older_than_seconds: int | None = None, limit: int = 10_000) -> int:
    """Re-enqueue the work that has waited longer than the grace period; returns how many
    emails and uploads were sent."""
    settings = get_settings()
    if older_than_seconds is None:
        older_than_seconds = settings.reconcile_after_seconds
    has_model = active_model(self.session) is not None
    sent = 0
    for status in NEXT_STEP:
        if status == EmailStatus.EMBEDDED and not has_model:
            continue  # waiting for a model, not stuck
        sent += _resend_emails(self.session, status, older_than_seconds, limit, settings)
    return sent + _resend_uploads(self.session, older_than_seconds, settings)


@shared_task(name=CLASSIFY_WAITING, base=DbTask, bind=True)
def classify_waiting(self: DbTask) -> int:
    """A model became active: send every email embedded while none was to be classified."""
    if active_model(self.session) is None:
        return 0
    # Touched, so the reconciler gives them a full grace period before sending them again.
    ids = sorted(self.session.scalars(
        update(Email).where(Email.status == EmailStatus.EMBEDDED)
        .values(updated_at=func.now()).returning(Email.id)))
    self.session.commit()
    send_in_batches(EMBED_EMAILS, ids, get_settings().enqueue_batch_size)
    if ids:
        log.info("classify_waiting: sent %d embedded emails to be classified", len(ids))
    return len(ids)
