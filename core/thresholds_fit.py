"""The active model's thresholds on this deployment's mail: how they hold (estimated false-
positive rate, drift of the score distribution) and re-fitting them (``ml.refit``).

Scores are the model's own verdicts. Labeled mail counts only where the model never trained
on it: the holdout set (with the labels it keeps) and mail labeled since the model was
trained."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.config import Settings
from core.models import Email, HoldoutEmail, Label, Prediction, TrainedModel
from ml.refit import (expected_fpr, fpr_estimate, population_stability, refit_thresholds,
                      score_histogram, score_mixture)
from ml.thresholds import Thresholds


@dataclass
class DeploymentScores:
    p_unlabeled: np.ndarray  # unlabeled mail of the window
    y_labeled: np.ndarray  # 1 = spam
    p_labeled: np.ndarray


def deployment_scores(session: Session, model: TrainedModel, days: int) -> DeploymentScores:
    """The model's scores on the unlabeled mail of the last ``days`` days, and on labeled
    mail it never trained on."""
    judged = (select(Prediction.p_spam, Email.label, HoldoutEmail.label)
              .join(Email, Email.id == Prediction.email_id)
              .outerjoin(HoldoutEmail, HoldoutEmail.email_id == Email.id)
              .where(Prediction.model_id == model.id))
    unlabeled = session.scalars(
        select(Prediction.p_spam).join(Email, Email.id == Prediction.email_id)
        .where(Prediction.model_id == model.id, Email.label.is_(None),
               Email.received_at > func.now() - timedelta(days=days)))
    labeled = session.execute(judged.where(or_(
        HoldoutEmail.email_id.is_not(None),
        Email.labeled_at > model.created_at))).all()
    return DeploymentScores(
        np.array(list(unlabeled), dtype=float),
        np.array([(held or label) == Label.SPAM for _, label, held in labeled], dtype=int),
        np.array([p for p, _, _ in labeled], dtype=float))


def threshold_health(session: Session, model: TrainedModel, settings: Settings) -> dict:
    """How the model's spam threshold holds on this deployment's mail (for the Models page
    and the drift check)."""
    scores = deployment_scores(session, model, settings.drift_window_days)
    threshold = float(model.thresholds["spam"])
    estimate = fpr_estimate(scores.p_labeled[scores.y_labeled == 0], threshold)
    reference = (model.params or {}).get("score_reference")
    psi = (population_stability(reference, scores.p_unlabeled)
           if reference and len(scores.p_unlabeled) >= settings.drift_min_emails else None)
    expected, why_not = None, None
    if len(scores.p_unlabeled) < settings.drift_min_emails:
        why_not = (f"{len(scores.p_unlabeled)} recent unlabeled emails: too few to tell "
                   f"(it takes {settings.drift_min_emails})")
    elif (mixture := score_mixture(scores.p_unlabeled)).apart:
        expected = expected_fpr(scores.p_unlabeled, threshold, mixture).to_dict()
    else:
        why_not = "recent mail's scores do not fall into two groups clearly apart"
    return {"threshold": threshold, "labeled_fpr": estimate.to_dict() if estimate else None,
            "expected_fpr": expected, "expected_fpr_unknown": why_not,
            "unlabeled": len(scores.p_unlabeled), "psi": psi,
            "drifted": psi is not None and psi > settings.drift_alert_psi,
            "fit": (model.params or {}).get("thresholds_fit")}


def refit(session: Session, model: TrainedModel, settings: Settings) -> str:
    """Re-fit ``model``'s thresholds on this deployment's mail and keep the old ones in its
    params; returns what changed. Raises ValueError when there is too little mail."""
    scores = deployment_scores(session, model, settings.drift_window_days)
    if len(scores.p_unlabeled) < settings.drift_min_emails:
        raise ValueError(f"{len(scores.p_unlabeled)} unlabeled emails judged by model "
                         f"{model.id} in the last {settings.drift_window_days} days: re-fitting "
                         f"needs {settings.drift_min_emails}")
    old = Thresholds.from_dict(model.thresholds)
    new, how = refit_thresholds(scores.p_unlabeled, scores.y_labeled, scores.p_labeled,
                                old.target_fpr, old.max_spam_missed, settings.refit_min_hams)
    when = session.scalar(select(func.now()))
    model.thresholds = new.to_dict()
    model.params = {**(model.params or {}), "score_reference": score_histogram(
        scores.p_unlabeled), "thresholds_fit": {
            "how": how, "at": when.isoformat(), "previous": old.to_dict(),
            "unlabeled": len(scores.p_unlabeled), "labeled": len(scores.y_labeled)}}
    return (f"model {model.id}: spam threshold {old.spam:.4g} → {new.spam:.4g}, ham threshold "
            f"{old.ham:.4g} → {new.ham:.4g}, from the {how}")
