"""Train a classifier on the labeled emails and add it to the registry."""

from __future__ import annotations

import numpy as np
from celery import shared_task
from sqlalchemy import select

from core.config import get_settings
from core.db import session_scope
from core.jobs import finish_job
from core.mail import text_for_model
from core.models import Email, EmailStatus, Job, JobState, Label, TrainedModel
from core.registry import activate
from core.vectors import document_vectors
from ml.baseline import train_baseline
from ml.classifiers import LINEAR, TFIDF_LR, TFIDF_NB, validate
from ml.linear import check_labels, train_linear_probe
from workers.app import TRAIN_MODEL, DbTask
from workers.embed import embed
from workers.ingest import apply_parse
from workers.runtime import get_encoder

EMBED_BATCH = 256


def _progress(job_id: int, done: int, total: int, message: str) -> None:
    """Job progress in its own transaction, so followers see it while training runs."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.done, job.total, job.message = done, total, message


@shared_task(name=TRAIN_MODEL, base=DbTask, bind=True)
def train_model(self: DbTask, job_id: int, kind: str, pooling: str | None = None,
                make_active: bool = True) -> int:
    settings = get_settings()
    session = self.session
    try:
        emails = list(session.scalars(
            select(Email).where(Email.label.is_not(None)).order_by(Email.id)))
        for email in emails:
            if email.status == EmailStatus.RECEIVED:
                apply_parse(email)
        y = np.array([e.label == Label.SPAM for e in emails], dtype=int)
        check_labels(y)
        encoder_name = None
        if kind == LINEAR:
            encoder = get_encoder()
            pooling = pooling or encoder.config.pooling
            encoder_name = encoder.name_for(pooling)
            for start in range(0, len(emails), EMBED_BATCH):
                _progress(job_id, start, len(emails), "embedding labeled emails")
                embed(session, emails[start:start + EMBED_BATCH], pooling)
                session.commit()  # keep the vectors even if training fails
            _progress(job_id, len(emails), len(emails), "fitting")
            vectors = document_vectors(session, encoder_name, [e.id for e in emails])
            classifier, oof, params = train_linear_probe(
                np.stack([vectors[e.id] for e in emails]), y)
            params["pooling"] = pooling
        elif kind in (TFIDF_NB, TFIDF_LR):
            _progress(job_id, 0, len(emails), "fitting")
            texts = [text_for_model(e.subject, e.text, settings.model_text_chars) for e in emails]
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
