"""Verdicts: the active model's p(spam), its thresholds, and the nearest labeled emails."""

from __future__ import annotations

import time

import numpy as np
from celery import shared_task
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
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

# Sources of mail that arrives one message at a time (``webhook:<provider>``, ``api``, ``cli``).
CALLBACK_SOURCES = ("webhook", "api", "cli")


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


def wants_callback(source: str) -> bool:
    """Mail that came in one message at a time (webhooks, /api/classify, ``spamsift
    classify``) gets its verdict posted to the callback URL; bulk-imported mail does not."""
    return source.split(":", 1)[0] in CALLBACK_SOURCES


def classify_batch(session: Session, emails: list[Email], started: float | None = None
                   ) -> dict[int, int]:
    """Give each email one prediction from the active model (nothing if none is active);
    returns each email's prediction id from that model.

    Idempotent: emails the model has already judged are left as they are, and the insert
    skips a row another worker wrote meanwhile, so a redelivered task adds no prediction and
    no callback. Each new verdict of mail that wants one is posted once, after the commit.
    """
    model = active_model(session)
    if model is None or not emails:
        return {}
    started = started if started is not None else time.perf_counter()
    judged = _predictions_of(session, model.id, [e.id for e in emails])
    todo = [e for e in emails if e.id not in judged]
    if todo:
        created = _insert_predictions(session, model, todo, started)
        judged = _predictions_of(session, model.id, [e.id for e in emails])
        if get_settings().callback_url:
            for email in todo:
                if judged[email.id] in created and wants_callback(email.source):
                    send_after_commit(session, DELIVER_VERDICT, [judged[email.id]])
    for email in emails:
        email.status = EmailStatus.CLASSIFIED
    session.flush()
    return judged


def _insert_predictions(session: Session, model: TrainedModel, emails: list[Email],
                        started: float) -> set[int]:
    """Score ``emails`` and insert their predictions, skipping any (email, model) pair that
    exists by now; returns the ids of the rows inserted."""
    p_spam, vectors = score(session, model, emails)
    thresholds = Thresholds.from_dict(model.thresholds)
    k = get_settings().evidence_k
    encoder_name = get_encoder().name
    elapsed_ms = (time.perf_counter() - started) * 1000 / len(emails)
    rows = []
    for email, p in zip(emails, p_spam):
        vector = vectors.get(email.id)
        evidence = {"neighbors": nearest_labeled(session, encoder_name, vector, k, email.id)
                    if vector is not None and k > 0 else [],
                    "encoder": encoder_name}
        rows.append({"email_id": email.id, "model_id": model.id, "p_spam": float(p),
                     "verdict": Verdict(thresholds.verdict(float(p))),
                     "thresholds": thresholds.to_dict(), "evidence": evidence,
                     "latency_ms": round(elapsed_ms, 2)})
    return set(session.scalars(
        insert(Prediction).values(rows)
        .on_conflict_do_nothing(index_elements=["email_id", "model_id"])
        .returning(Prediction.id)))


def _predictions_of(session: Session, model_id: int, email_ids: list[int]) -> dict[int, int]:
    return dict(session.execute(
        select(Prediction.email_id, Prediction.id)
        .where(Prediction.model_id == model_id, Prediction.email_id.in_(email_ids))).all())


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
    return classify_batch(self.session, [email], started).get(email_id)
