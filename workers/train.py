"""Train a classifier on the labeled emails and add it to the registry."""

from __future__ import annotations

import time

import numpy as np
from celery import shared_task
from sqlalchemy import func, select

from core.config import get_settings
from core.db import session_scope
from core.jobs import finish_job
from core.mail import parse_email, text_for_model
from core.models import Email, EmailStatus, Job, JobState, Label, TrainedModel
from core.registry import activate
from core.vectors import document_vectors, emails_without_chunks
from ml.baseline import train_baseline
from ml.classifiers import LINEAR, TFIDF_LR, TFIDF_NB, validate
from ml.linear import check_labels, train_linear_probe
from workers.app import TRAIN_MODEL, DbTask, classify_waiting_after_commit
from workers.embed import embed
from workers.runtime import get_encoder

EMBED_BATCH = 256


def _progress(job_id: int, done: int, total: int, message: str) -> None:
    """Job progress in its own transaction, so followers see it while training runs."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.done, job.total, job.message = done, total, message
        if job.state == JobState.QUEUED:
            job.state = JobState.RUNNING
            job.started_at = func.now()


def _texts(emails: list[Email], max_chars: int) -> list[str]:
    """Model input for each email; mail no worker has parsed yet is parsed here, in memory
    (training never writes to email rows, so it never waits on the bulk workers' locks)."""
    texts = []
    for email in emails:
        if email.status == EmailStatus.RECEIVED:
            parsed = parse_email(email.raw)
            texts.append(text_for_model(parsed.subject, parsed.text, max_chars))
        else:
            texts.append(text_for_model(email.subject, email.text, max_chars))
    return texts


def _embed_all(session, job_id: int, email_ids: list[int], pooling: str) -> None:
    """Make sure every email has vectors for ``pooling``: embed those no bulk worker holds,
    and wait for the ones a bulk worker is embedding right now."""
    encoder_name = get_encoder().name_for(pooling)
    while True:
        missing = sorted(emails_without_chunks(session, encoder_name, email_ids))
        _progress(job_id, len(email_ids) - len(missing), len(email_ids),
                  "embedding labeled emails")
        if not missing:
            return
        batch = list(session.scalars(
            select(Email).where(Email.id.in_(missing[:EMBED_BATCH]),
                                Email.status != EmailStatus.RECEIVED)
            .with_for_update(skip_locked=True)))
        if batch:
            embed(session, batch, pooling)
        else:
            time.sleep(1)  # parsed or embedded elsewhere meanwhile
        session.commit()  # keep the vectors, release the rows


@shared_task(name=TRAIN_MODEL, base=DbTask, bind=True)
def train_model(self: DbTask, job_id: int, kind: str, pooling: str | None = None,
                make_active: bool = True) -> int:
    settings = get_settings()
    session = self.session
    try:
        _progress(job_id, 0, 0, "loading labeled emails")
        emails = list(session.scalars(
            select(Email).where(Email.label.is_not(None)).order_by(Email.id)))
        y = np.array([e.label == Label.SPAM for e in emails], dtype=int)
        check_labels(y)
        encoder_name = None
        if kind == LINEAR:
            encoder = get_encoder()
            pooling = pooling or encoder.config.pooling
            encoder_name = encoder.name_for(pooling)
            _embed_all(session, job_id, [e.id for e in emails], pooling)
            _progress(job_id, len(emails), len(emails), "fitting")
            vectors = document_vectors(session, encoder_name, [e.id for e in emails])
            classifier, oof, params = train_linear_probe(
                np.stack([vectors[e.id] for e in emails]), y)
            params["pooling"] = pooling
        elif kind in (TFIDF_NB, TFIDF_LR):
            _progress(job_id, 0, len(emails), "fitting")
            texts = _texts(emails, settings.model_text_chars)
            classifier, oof, params = train_baseline(texts, y, kind.split("-")[1])
        else:
            raise ValueError(f"cannot train a model of kind {kind!r}")
        checked = validate(y, oof, settings.target_fpr, settings.max_spam_missed)
        artifact, blob = classifier.to_artifact()
        model = TrainedModel(
            kind=kind, encoder=encoder_name, params=params,
            metrics={**checked.metrics, "validation": "out-of-fold", "spam": int(y.sum()),
                     "ham": int(len(y) - y.sum())},
            curves=checked.curves, confusion=checked.confusion,
            thresholds=checked.thresholds.to_dict(), train_size=len(emails),
            artifact=artifact, artifact_blob=blob)
        session.add(model)
        session.flush()
        if make_active:
            activate(session, model.id)
            classify_waiting_after_commit(session)
        job = session.get(Job, job_id)
        finish_job(session, job, JobState.SUCCEEDED, message=f"trained model {model.id}",
                   result={"model_id": model.id, "metrics": checked.metrics})
        job.done = job.total = len(emails)
        return model.id
    except Exception as exc:
        session.rollback()
        with session_scope() as failed:
            finish_job(failed, failed.get(Job, job_id), JobState.FAILED,
                       message=f"{type(exc).__name__}: {exc}")
        raise
