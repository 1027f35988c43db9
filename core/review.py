"""The review queue: the unlabeled mail a person should label next (``ml.active`` chooses),
from the active model's verdicts and the search index's document vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Email, EmailStatus, Prediction
from core.registry import active_model
from core.vectors import document_vectors
from ml.active import POOL_FACTOR, choose, uncertainty
from ml.odds import log_odds


@dataclass(frozen=True)
class ReviewItem:
    email: Email
    prediction: Prediction
    uncertainty: float  # log-odds from the spam threshold


def review_queue(session: Session, space: str, k: int) -> list[ReviewItem]:
    """Up to ``k`` unlabeled emails judged by the active model, in the order to label them;
    ``space``: the vector space whose document vectors spread the choice."""
    model = active_model(session)
    if model is None:
        return []
    threshold = float(model.thresholds["spam"])
    p = func.least(func.greatest(Prediction.p_spam, 1e-9), 1 - 1e-9)
    distance = func.abs(func.ln(p / (1 - p)) - float(log_odds(np.array([threshold]))[0]))
    rows = session.execute(
        select(Email, Prediction).join(Prediction, Prediction.id == Email.verdict_id)
        .where(Email.label.is_(None), Email.status == EmailStatus.CLASSIFIED,
               Prediction.model_id == model.id)
        .order_by(distance, Email.id).limit(POOL_FACTOR * k)).all()
    if not rows:
        return []
    p_spam = np.array([prediction.p_spam for _, prediction in rows])
    found = document_vectors(session, space, [email.id for email, _ in rows])
    dim = len(next(iter(found.values()))) if found else 0
    vectors = (np.stack([found.get(email.id, np.zeros(dim)) for email, _ in rows])
               if found else None)
    distances = uncertainty(p_spam, threshold)
    return [ReviewItem(rows[i][0], rows[i][1], float(distances[i]))
            for i in choose(p_spam, threshold, k, vectors)]
