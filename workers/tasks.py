"""The pipeline's Celery tasks: load rows, call ``workers.pipeline``, enqueue what follows.

Every task re-reads its rows and is safe to run twice (a redelivered message, a re-send by
the reconciler): what is done already is skipped.
"""

from __future__ import annotations

import time

from celery import shared_task
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from core.config import get_settings
from core.jobs import advance_job, finish_job, start_job
from core.models import REALTIME_WAITING_SQL, Email, EmailStatus, Job, JobState, Prediction
from workers.app import DbTask
from workers.client import BrokerUnavailable, send, send_after_commit, waiting_messages
from workers.names import (BULK, CLASSIFY_EMAIL, CLASSIFY_EMAILS, INDEX_EMAILS, INDEX_PRIORITY,
                           REINDEX, RESCORE)
from workers.pipeline import index, judge
from workers.runtime import active_model_row

# Delivered mail waiting longer than this is the reconciler's, not a realtime batch's.
REALTIME_CLAIM_SECONDS = 60
RESCORE_BATCH = 500
# Emails an index task embeds (a second or two) between two looks for waiting verdicts.
INDEX_STEP = 16


def _claim_realtime(session, email_id: int, limit: int) -> list[Email]:
    """The email, and other delivered mail waiting for a verdict right now, locked for this
    worker: requests that arrive together are judged (and embedded) in one batch. Rows
    another worker holds are left to it."""
    claimed = list(session.scalars(
        select(Email).where(Email.id == email_id, Email.status != EmailStatus.FAILED,
                            Email.verdict_id.is_(None))  # else judged in an earlier batch
        .with_for_update(skip_locked=True)))
    if limit > len(claimed):
        # An index scan in received_at order: it marks the entries of judged mail dead as
        # it passes them, so the next claim does not visit them again.
        claimed += session.scalars(
            select(Email).where(text(REALTIME_WAITING_SQL), Email.id != email_id,
                                Email.received_at > func.now() - func.make_interval(
                                    0, 0, 0, 0, 0, 0, REALTIME_CLAIM_SECONDS))
            .order_by(Email.received_at).limit(limit - len(claimed))
            .with_for_update(skip_locked=True))
    return claimed


@shared_task(name=CLASSIFY_EMAIL, base=DbTask, bind=True)
def classify_email(self: DbTask, email_id: int) -> int | None:
    """One delivered email, as fast as possible, with whatever arrived beside it. Returns its
    prediction id (None when no model is active, or another task judges or judged it)."""
    started = time.perf_counter()
    emails = _claim_realtime(self.session, email_id, get_settings().realtime_batch)
    if not emails:
        return None
    judged = judge(self.session, emails, started, evidence=True)
    send_after_commit(self.session, INDEX_EMAILS, [[e.id for e in emails]])
    return judged.get(email_id)


@shared_task(name=CLASSIFY_EMAILS, base=DbTask, bind=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def classify_emails(self: DbTask, email_ids: list[int], job_id: int | None = None) -> int:
    """A batch of imported mail: parse, judge with the active model, then index apart."""
    emails = list(self.session.scalars(
        select(Email).where(Email.id.in_(email_ids), Email.status != EmailStatus.FAILED)
        .order_by(Email.id).with_for_update(skip_locked=True)))
    judge(self.session, emails)
    if emails:
        send_after_commit(self.session, INDEX_EMAILS, [[e.id for e in emails]])
    if job_id is not None:
        advance_job(self.session, job_id, len(emails))
    return len(emails)


@shared_task(name=INDEX_EMAILS, base=DbTask, bind=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def index_emails(self: DbTask, email_ids: list[int], job_id: int | None = None) -> int:
    """Chunks and vectors for search, after the verdict; returns how many were indexed.

    Yields to verdicts: a batch takes tens of seconds to embed, and a worker busy with it
    could not take the verdicts that arrive meanwhile (priorities only order the messages
    not yet taken). So it embeds ``INDEX_STEP`` emails at a time, and when verdict work waits
    on the bulk queue it sends the rest back to the queue, behind that work. ``job_id``: a
    reindex job that counts the emails done.
    """
    indexed = 0
    for start in range(0, len(email_ids), INDEX_STEP):
        if start and _verdicts_waiting():
            try:
                send(INDEX_EMAILS, [email_ids[start:]], {"job_id": job_id})
                break
            except BrokerUnavailable:
                pass  # then index it all here
        emails = list(self.session.scalars(
            select(Email).where(Email.id.in_(email_ids[start:start + INDEX_STEP]))
            .order_by(Email.id)))
        self.session.commit()  # hold nothing, not even a table lock, while embedding
        indexed += index(self.session, emails)
        finished = job_id is not None and advance_job(
            self.session, job_id, len(email_ids[start:start + INDEX_STEP]))
        self.session.commit()
        if finished:  # a reindex job's last batch: retire the old vector spaces now
            try:
                send(REINDEX, [])
            except BrokerUnavailable:
                pass  # the nightly reindex does it
    return indexed


def _verdicts_waiting() -> bool:
    try:
        return waiting_messages(BULK, before=INDEX_PRIORITY) > 0
    except RedisError:
        return False


def needs_rescore(model_id: int):
    """Mail with text whose verdict is not the model's (or that has none)."""
    return (Email.status.in_((EmailStatus.PARSED, EmailStatus.CLASSIFIED))
            & ~select(Prediction.id).where(Prediction.id == Email.verdict_id,
                                           Prediction.model_id == model_id).exists())


@shared_task(name=RESCORE, base=DbTask, bind=True)
def rescore(self: DbTask, job_id: int | None = None) -> int:
    """The active model judges all mail judged by another model or by none: unlabeled mail
    first, newest first, a batch per transaction, progress in the job. Stops when another
    model is activated (that activation starts its own job); hands the rest to a new message
    when it nears the bulk time limit. Returns how many emails it judged."""
    session = self.session
    settings = get_settings()
    model = active_model_row(session)
    job = session.get(Job, job_id) if job_id is not None else None
    if model is None or (job is not None and (job.params.get("model_id") != model.id
                                              or job.state not in (JobState.QUEUED,
                                                                   JobState.RUNNING))):
        if job is not None and job.state in (JobState.QUEUED, JobState.RUNNING):
            finish_job(session, job, JobState.CANCELLED, message="another model is active")
        return 0
    if job is not None and job.state == JobState.QUEUED:
        start_job(session, job, total=session.scalar(
            select(func.count()).select_from(Email).where(needs_rescore(model.id))))
    session.commit()
    deadline = time.monotonic() + settings.bulk_time_limit / 2
    judged = 0
    while True:
        batch = list(session.scalars(
            select(Email).where(needs_rescore(model.id))
            .order_by(Email.label.is_not(None), Email.received_at.desc(), Email.id.desc())
            .limit(RESCORE_BATCH).with_for_update(skip_locked=True)))
        if not batch:
            break
        judge(session, batch)
        judged += len(batch)
        if job is not None:
            advance_job(session, job.id, len(batch))
        session.commit()
        current = active_model_row(session)
        if current is None or current.id != model.id:
            return judged
        if time.monotonic() > deadline:
            send(RESCORE, [job_id])
            return judged
    if job is not None:
        session.refresh(job)
        if job.state in (JobState.QUEUED, JobState.RUNNING):
            finish_job(session, job, JobState.SUCCEEDED,
                       message=f"model {model.id} judged {job.done} emails")
    return judged
