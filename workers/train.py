"""Train a classifier on the labeled emails and add it to the registry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from celery import shared_task
from sqlalchemy import func, select

from core.config import get_settings
from core.db import session_scope
from core.jobs import finish_job
from core.mail import parse_email
from core.models import Email, EmailStatus, Job, JobState, Label, TrainedModel
from ml.baseline import train_baseline
from ml.cascade import choose_cascade
from ml.classifiers import CASCADE, LINEAR, TFIDF_LR, TFIDF_NB, validate
from ml.linear import check_labels, train_linear_probe
from workers.app import DbTask
from workers.client import activate_model
from workers.names import TRAIN_MODEL
from workers.pipeline import EncoderInput, model_text, window_vectors

EMBED_BATCH = 256


def _progress(job_id: int, done: int, total: int, message: str) -> None:
    """Job progress in its own transaction, so followers see it while training runs."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.done, job.total, job.message = done, total, message
        if job.state == JobState.QUEUED:
            job.state = JobState.RUNNING
            job.started_at = func.clock_timestamp()


def _texts(emails: list[Email]) -> list[str]:
    """Model input for each email; mail no worker has parsed yet is parsed here, in memory
    (training never writes to email rows, so it never waits on the bulk workers' locks)."""
    texts = []
    for email in emails:
        if email.status == EmailStatus.RECEIVED:
            parsed = parse_email(email.raw)
            texts.append(model_text(parsed.subject, parsed.text))
        else:
            texts.append(model_text(email.subject, email.text))
    return texts


def _window_vectors(job_id: int, texts: list[str], how: EncoderInput) -> np.ndarray:
    """The classification window of every text, as the pipeline will read new mail."""
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        _progress(job_id, start, len(texts), "embedding labeled emails")
        parts.append(window_vectors(texts[start:start + EMBED_BATCH], how))
    return np.concatenate(parts)


@dataclass
class Fitted:
    """A classifier fitted on the labeled mail, with its out-of-fold p(spam)."""

    kind: str
    classifier: object | None  # None for a cascade: its stages are models of their own
    oof: np.ndarray
    params: dict
    encoder: str | None = None


def _fit(job_id: int, kind: str, texts: list[str], y: np.ndarray, pooling: str | None
         ) -> Fitted:
    if kind == LINEAR:
        how = EncoderInput.configured(pooling)
        vectors = _window_vectors(job_id, texts, how)
        _progress(job_id, len(texts), len(texts), "fitting")
        classifier, oof, params = train_linear_probe(vectors, y)
        params.update(pooling=how.pooling, window=how.window, backend=how.backend)
        return Fitted(kind, classifier, oof, params, how.space())
    if kind in (TFIDF_NB, TFIDF_LR):
        _progress(job_id, 0, len(texts), "fitting")
        classifier, oof, params = train_baseline(texts, y, kind.split("-")[1])
        return Fitted(kind, classifier, oof, params)
    raise ValueError(f"cannot train a model of kind {kind!r}")


def _register(session, fitted: Fitted, y: np.ndarray, extra_metrics: dict | None = None
              ) -> TrainedModel:
    settings = get_settings()
    checked = validate(y, fitted.oof, settings.target_fpr, settings.max_spam_missed)
    artifact, blob = fitted.classifier.to_artifact() if fitted.classifier else ({}, None)
    model = TrainedModel(
        kind=fitted.kind, encoder=fitted.encoder, params=fitted.params,
        metrics={**checked.metrics, **(extra_metrics or {}), "validation": "out-of-fold",
                 "spam": int(y.sum()), "ham": int(len(y) - y.sum())},
        curves=checked.curves, confusion=checked.confusion,
        thresholds=checked.thresholds.to_dict(), train_size=len(y),
        artifact=artifact, artifact_blob=blob)
    session.add(model)
    session.flush()
    return model


def _train_cascade(session, job_id: int, texts: list[str], y: np.ndarray,
                   pooling: str | None) -> TrainedModel:
    """TF-IDF LR decides the mail it is sure of, a linear model on the encoder the rest
    (``ml.cascade``); both stages are registered as models of their own."""
    settings = get_settings()
    cheap = _fit(job_id, TFIDF_LR, texts, y, None)
    strong = _fit(job_id, LINEAR, texts, y, pooling)
    plan = choose_cascade(y, cheap.oof, strong.oof, settings.target_fpr,
                          settings.max_spam_missed)
    stages = [_register(session, fitted, y) for fitted in (cheap, strong)]
    combined, _ = plan.combine(cheap.oof, strong.oof)
    return _register(session, Fitted(
        CASCADE, None, combined,
        {"cheap_model_id": stages[0].id, "strong_model_id": stages[1].id,
         "plan": plan.to_dict()}, strong.encoder), y,
        {"cheap_share": plan.cheap_share, "strong_f1": plan.strong_f1})


@shared_task(name=TRAIN_MODEL, base=DbTask, bind=True)
def train_model(self: DbTask, job_id: int, kind: str, pooling: str | None = None,
                make_active: bool = True) -> int:
    session = self.session
    try:
        _progress(job_id, 0, 0, "loading labeled emails")
        emails = list(session.scalars(
            select(Email).where(Email.label.is_not(None)).order_by(Email.id)))
        y = np.array([e.label == Label.SPAM for e in emails], dtype=int)
        check_labels(y)
        texts = _texts(emails)
        if kind == CASCADE:
            model = _train_cascade(session, job_id, texts, y, pooling)
        else:
            model = _register(session, _fit(job_id, kind, texts, y, pooling), y)
        if make_active:
            activate_model(session, model.id)
        job = session.get(Job, job_id)
        finish_job(session, job, JobState.SUCCEEDED, message=f"trained model {model.id}",
                   result={"model_id": model.id, "metrics": model.metrics})
        job.done = job.total = len(emails)
        return model.id
    except Exception as exc:
        session.rollback()
        with session_scope() as failed:
            finish_job(failed, failed.get(Job, job_id), JobState.FAILED,
                       message=f"{type(exc).__name__}: {exc}")
        raise
