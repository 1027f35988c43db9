"""Verdicts: the active model's p(spam), its thresholds, and the nearest labeled emails."""

from __future__ import annotations

import time

import numpy as np
from celery import shared_task
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import get_settings
from core.mail import text_for_model
from core.models import Email, EmailStatus, Prediction, TrainedModel, Verdict
from core.registry import active_model
from core.search import SearchFilter, vector_search
from core.vectors import document_vectors
from ml.classifiers import READS_TEXT
from ml.thresholds import Thresholds
from workers.app import CLASSIFY_EMAIL, DELIVER_VERDICT, DbTask, send_after_commit
from workers.runtime import classifier_for, get_encoder


def score(session: Session, model: TrainedModel, emails: list[Email]
          ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """p(spam) for each email, and the document vectors used for evidence."""
    encoder = get_encoder()
    vectors = document_vectors(session, encoder.name, [e.id for e in emails])
    classifier = classifier_for(model)
    if model.kind in READS_TEXT:
        max_chars = get_settings().model_text_chars
        p_spam = classifier.predict_proba(
            [text_for_model(e.subject, e.text, max_chars) for e in emails])
    else:
        if model.encoder != encoder.name:
            model_vectors = document_vectors(session, model.encoder, [e.id for e in emails])
        else:
            model_vectors = vectors
        missing = [e.id for e in emails if e.id not in model_vectors]
        if missing:
            raise RuntimeError(f"emails {missing[:5]} have no vectors from {model.encoder}")
        p_spam = classifier.predict_proba(np.stack([model_vectors[e.id] for e in emails]))
    return np.asarray(p_spam, dtype=float), vectors


def nearest_labeled(session: Session, encoder: str, vector: np.ndarray, k: int,
                    exclude_email_id: int) -> list[dict]:
    """The evidence: the k labeled emails nearest to the email, best first."""
    hits = vector_search(session, encoder, vector, k, SearchFilter(label="any"),
                         exclude_email_id=exclude_email_id)
    return [{"email_id": hit.email_id, "label": hit.label, "subject": hit.subject,
             "similarity": round(hit.score, 4)} for hit in hits]


def classify_batch(session: Session, emails: list[Email], started: float | None = None
                   ) -> list[Prediction]:
    """Write one prediction per email with the active model; nothing if none is active."""
    model = active_model(session)
    if model is None or not emails:
        return []
    started = started if started is not None else time.perf_counter()
    p_spam, vectors = score(session, model, emails)
    thresholds = Thresholds.from_dict(model.thresholds)
    k = get_settings().evidence_k
    encoder_name = get_encoder().name
    elapsed_ms = (time.perf_counter() - started) * 1000 / len(emails)
    predictions = []
    for email, p in zip(emails, p_spam):
        vector = vectors.get(email.id)
        evidence = {"neighbors": nearest_labeled(session, encoder_name, vector, k, email.id)
                    if vector is not None and k > 0 else [],
                    "encoder": encoder_name}
        prediction = Prediction(email_id=email.id, model_id=model.id, p_spam=float(p),
                                verdict=Verdict(thresholds.verdict(float(p))),
                                thresholds=thresholds.to_dict(), evidence=evidence,
                                latency_ms=round(elapsed_ms, 2))
        session.add(prediction)
        predictions.append(prediction)
        email.status = EmailStatus.CLASSIFIED
    session.flush()
    return predictions


@shared_task(name=CLASSIFY_EMAIL, base=DbTask, bind=True)
def classify_email(self: DbTask, email_id: int) -> int | None:
    """One email, as fast as possible: parse if needed, embed, predict. Returns the
    prediction id (None when no model is active)."""
    from workers.embed import embed
    from workers.ingest import apply_parse

    started = time.perf_counter()
    email = self.session.scalar(select(Email).where(Email.id == email_id).with_for_update())
    if email is None:
        return None
    if email.status == EmailStatus.RECEIVED:
        apply_parse(email)
    embed(self.session, [email])
    predictions = classify_batch(self.session, [email], started)
    if not predictions:
        return None
    if get_settings().callback_url:
        send_after_commit(self.session, DELIVER_VERDICT, [predictions[0].id])
    return predictions[0].id
