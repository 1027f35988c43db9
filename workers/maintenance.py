"""Periodic upkeep: nothing stored is ever left behind by a lost broker message.

The reconciler re-sends the next step of every email that has not moved for the grace period
(``SPAMSIFT_RECONCILE_AFTER_SECONDS``), and of every upload whose import never started. Each
re-send doubles the wait before the next one; after ``SPAMSIFT_RECONCILE_MAX_RESENDS``
re-sends without progress the email or upload is marked failed with the reason, and failed
mail is never sent again. Every state an email can stall in is covered:

- ``received`` or ``parsed`` without a verdict while a model is active: judged again (mail
  parsed while no model was active waits for one; activating it re-scores that mail);
- a verdict that is not the active model's, when no re-scoring runs: re-scored;
- ``classified`` but not indexed in the configured vector space: indexed again (never marked
  failed for that: its verdict stands).

A training job that has not moved for the grace period is sent again too: its worker was lost
(a LoRA run goes on from its checkpoint), or its message was; a lock on the job keeps a
re-send from running beside a worker that is only slow.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta

from celery import shared_task
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.config import Settings, get_settings
from core.jobs import create_job, finish_job, uploads_dir
from core.models import Email, EmailStatus, Job, JobState
from core import vector_index
from core.registry import active_model
from core.thresholds_fit import refit, threshold_health
from workers.app import DbTask
from workers.client import (BrokerUnavailable, index_space, rescore_after_commit, send,
                            send_in_batches)
from workers.schedule import run_scheduled
from workers.names import (ADAPT_ENCODER, CHECK_DRIFT, CLASSIFY_EMAILS, IMPORT_UPLOAD,
                           INDEX_EMAILS, PURGE_RAW, RECONCILE, REFIT_THRESHOLDS, REINDEX,
                           SELF_TRAIN, TRAIN_MODEL)
from workers.tasks import needs_rescore

log = logging.getLogger(__name__)


def stuck_emails(session: Session, stalled, older_than_seconds: int, limit: int
                 ) -> list[tuple[int, int]]:
    """(id, resends) of emails matching ``stalled`` after their grace period, which doubles
    with each re-send: their task was lost, never sent, or keeps failing."""
    grace = func.make_interval(0, 0, 0, 0, 0, 0,
                               older_than_seconds * func.power(2, Email.resends))
    return [tuple(row) for row in session.execute(
        select(Email.id, Email.resends)
        .where(stalled, Email.updated_at < func.now() - grace)
        .order_by(Email.id)
        .limit(limit)
    )]


def _resend_emails(session: Session, stalled, task: str, what: str, older_than_seconds: int,
                   limit: int, settings: Settings, give_up: bool = True) -> int:
    rows = stuck_emails(session, stalled, older_than_seconds, limit)
    worn = [email_id for email_id, resends in rows
            if give_up and resends >= settings.reconcile_max_resends]
    due = [email_id for email_id, resends in rows if email_id not in set(worn)]
    if worn:
        session.execute(update(Email).where(Email.id.in_(worn)).values(
            status=EmailStatus.FAILED,
            status_message=f"gave up after {settings.reconcile_max_resends} re-sends: still "
                           f"{what} (see the worker logs)"))
        log.error("reconcile: gave up on %d emails still %s, e.g. %s", len(worn), what,
                  worn[:5])
    if due:
        # Touch the rows so the next re-send waits twice as long as this one did.
        session.execute(update(Email).where(Email.id.in_(due))
                        .values(updated_at=func.now(), resends=Email.resends + 1))
    session.commit()
    if due:
        send_in_batches(task, due, settings.enqueue_batch_size)
        log.info("reconcile: re-enqueued %d emails %s", len(due), what)
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
def reconcile(self: DbTask, older_than_seconds: int | None = None, limit: int = 10_000,
              from_beat: bool = False) -> int | None:
    """Re-enqueue the work that has waited longer than the grace period; returns how many
    emails, uploads and jobs were sent (None when another run holds the job)."""
    settings = get_settings()
    if older_than_seconds is None:
        older_than_seconds = settings.reconcile_after_seconds

    def body() -> tuple[str, int]:
        sent = _reconcile(self.session, older_than_seconds, limit, settings)
        return f"re-sent {sent}", sent

    return run_scheduled("reconcile", body, settings, from_beat)


def _reconcile(session: Session, older_than_seconds: int, limit: int,
               settings: Settings) -> int:
    model = active_model(session)
    sent = 0
    if model is not None:
        waiting = Email.status.in_((EmailStatus.RECEIVED, EmailStatus.PARSED))
        sent += _resend_emails(session, waiting, CLASSIFY_EMAILS, "without a verdict",
                               older_than_seconds, limit, settings)
        sent += _resend_rescore(session, model, older_than_seconds)
    else:
        sent += _resend_emails(session, Email.status == EmailStatus.RECEIVED, CLASSIFY_EMAILS,
                               "unparsed", older_than_seconds, limit, settings)
    unindexed = (Email.status.in_((EmailStatus.PARSED, EmailStatus.CLASSIFIED))
                 & Email.indexed_with.is_distinct_from(index_space()))
    sent += _resend_emails(session, unindexed, INDEX_EMAILS, "not indexed", older_than_seconds,
                           limit, settings, give_up=False)
    sent += _resend_training(session, older_than_seconds)
    return sent + _resend_uploads(session, older_than_seconds, settings)


@shared_task(name=REINDEX, base=DbTask, bind=True)
def reindex(self: DbTask, from_beat: bool = False) -> int | None:
    """Send every email without vectors in the configured vector space (all of them after
    an encoder change) to be indexed, behind every verdict, followed by a "reindex" job;
    returns how many were sent. Once every email has them (the job's last batch sends this
    task again), the chunks of spaces nothing reads any more are deleted and the HNSW index
    is rebuilt concurrently if that emptied much of it (``core.vector_index``)."""
    settings = get_settings()

    def body() -> tuple[str, int]:
        session, space = self.session, index_space()
        ids = list(session.scalars(select(Email.id).where(
            Email.status.in_((EmailStatus.PARSED, EmailStatus.CLASSIFIED)),
            Email.indexed_with.is_distinct_from(space)).order_by(Email.id)))
        if not ids:
            model = active_model(session)
            # The active model's space stays: its verdicts cite the nearest labeled emails.
            keep = {space} | ({model.encoder} if model is not None and model.encoder else set())
            return f"every email has vectors in {space}; {vector_index.maintain(session, keep)}", 0
        job = create_job(session, "reindex", total=len(ids), params={"space": space})
        session.commit()
        try:
            send_in_batches(INDEX_EMAILS, ids, settings.enqueue_batch_size, job_id=job.id)
        except BrokerUnavailable:
            finish_job(session, job, JobState.FAILED,
                       message="the broker is down: the reconciler indexes them when it is back")
            session.commit()
            raise
        return f"sent {len(ids)} emails to be indexed in {space} (job {job.id})", len(ids)

    return run_scheduled("reindex", body, settings, from_beat)


@shared_task(name=CHECK_DRIFT, base=DbTask, bind=True)
def check_drift(self: DbTask, from_beat: bool = False) -> float | None:
    """The active model's drift (PSI) on recent mail; logs a warning above the alert level."""
    settings = get_settings()

    def body() -> tuple[str, float | None]:
        model = active_model(self.session)
        if model is None:
            return "no active model", None
        health = threshold_health(self.session, model, settings)
        if health["psi"] is None:
            return (f"{health['unlabeled']} recent emails judged by model {model.id}: too few "
                    "to tell, or no reference distribution"), None
        if health["drifted"]:
            log.warning("drift: recent mail's scores moved away from those model %s's "
                        "thresholds were chosen on (PSI %.2f): re-fit them (`spamsift models "
                        "refit`) or retrain", model.id, health["psi"])
        return (f"model {model.id}: PSI {health['psi']:.3f}"
                + (" — drifted, re-fit the thresholds" if health["drifted"] else "")), \
            health["psi"]

    return run_scheduled("drift", body, settings, from_beat)


@shared_task(name=REFIT_THRESHOLDS, base=DbTask, bind=True)
def refit_thresholds(self: DbTask, from_beat: bool = False) -> str | None:
    """Re-fit the active model's thresholds on recent mail (``core.thresholds_fit``)."""
    settings = get_settings()

    def body() -> tuple[str, str | None]:
        model = active_model(self.session)
        if model is None:
            return "no active model", None
        try:
            changed = refit(self.session, model, settings)
        except ValueError as exc:
            return str(exc), None
        return changed, changed

    return run_scheduled("refit", body, settings, from_beat)


PURGE_BATCH = 1000


@shared_task(name=PURGE_RAW, base=DbTask, bind=True)
def purge_raw(self: DbTask, from_beat: bool = False) -> int | None:
    """Empty the raw message of mail received more than ``SPAMSIFT_RETENTION_DAYS`` ago and
    judged (never mail still in the pipeline, or failed: it may need its raw message);
    returns how many were purged."""
    settings = get_settings()

    def body() -> tuple[str, int]:
        if not settings.retention_days:
            return "retention is off (SPAMSIFT_RETENTION_DAYS is 0)", 0
        session, purged = self.session, 0
        while True:
            batch = select(Email.id).where(
                Email.received_at < func.now() - timedelta(days=settings.retention_days),
                Email.status == EmailStatus.CLASSIFIED, Email.raw_purged_at.is_(None)
            ).limit(PURGE_BATCH).scalar_subquery()
            done = session.execute(update(Email).where(Email.id.in_(batch)).values(
                raw=b"", raw_purged_at=func.now())).rowcount
            session.commit()
            purged += done
            if done < PURGE_BATCH:
                break
        return (f"purged the raw message of {purged} emails received more than "
                f"{settings.retention_days} days ago"), purged

    return run_scheduled("purge", body, settings, from_beat)


# Jobs of these kinds are one task each, sent again by the job's id alone.
TRAINING_TASKS = {"train": TRAIN_MODEL, "adapt": ADAPT_ENCODER, "selftrain": SELF_TRAIN}


def _resend_training(session: Session, older_than_seconds: int) -> int:
    """Send again the training and adaptation jobs that have not moved within the grace
    period."""
    stalled = session.execute(select(Job.id, Job.kind).where(
        Job.kind.in_(TRAINING_TASKS), Job.state.in_((JobState.QUEUED, JobState.RUNNING)),
        Job.updated_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0,
                                                         older_than_seconds))).all()
    if not stalled:
        return 0
    session.execute(update(Job).where(Job.id.in_([job_id for job_id, _ in stalled]))
                    .values(updated_at=func.now()))
    session.commit()
    for job_id, kind in stalled:
        send(TRAINING_TASKS[kind], [job_id])
    log.info("reconcile: re-enqueued training jobs %s", [job_id for job_id, _ in stalled])
    return len(stalled)


def _resend_rescore(session: Session, model, older_than_seconds: int) -> int:
    """Start re-scoring again when mail waits for the active model's verdict and no
    re-scoring job for it has moved within the grace period (its message was lost)."""
    if not session.scalar(select(select(Email.id).where(
            needs_rescore(model.id), Email.status == EmailStatus.CLASSIFIED).exists())):
        return 0
    recent = session.scalar(select(select(Job.id).where(
        Job.kind == "rescore", Job.state.in_((JobState.QUEUED, JobState.RUNNING)),
        Job.params["model_id"].as_integer() == model.id,
        Job.updated_at > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
    ).exists()))
    if recent:
        return 0
    for stale in session.scalars(select(Job).where(
            Job.kind == "rescore", Job.state.in_((JobState.QUEUED, JobState.RUNNING)))):
        finish_job(session, stale, JobState.FAILED, message="stalled; started again")
    rescore_after_commit(session, model)
    session.commit()
    log.info("reconcile: re-scoring with model %s started again", model.id)
    return 1
