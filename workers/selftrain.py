"""Self-training on the deployment's unlabeled mail (``spamsift adapt selftrain``).

Each round the best model so far labels the unlabeled mail it is confident about
(``ml.selftrain``); those pseudo-labels, stored as such in ``pseudo_labels``, join the human
labels, and a model of the active kind is trained on both. A round's model no worse than the
best so far on the holdout set becomes the best; the first round that does not improve ends
the run. The best model is activated if it is not the active one. Pseudo-labels only label
mail no person labeled, and a person's label removes an email's pseudo-label.
"""

from __future__ import annotations

import logging

import numpy as np
from celery import shared_task
from sqlalchemy import delete, select

from core.holdout import not_held_out
from core.models import Email, EmailStatus, Job, Label, PseudoLabel, TrainedModel
from core.registry import active_model
from ml.metrics import binary_metrics
from ml.selftrain import SelfTrainSettings, self_train
from workers.app import DbTask
from workers.client import activate_model
from workers.names import SELF_TRAIN
from workers.pipeline import model_texts, score_texts
from workers.retrain import holdout_data, recipe
from workers.train import finish, labeled_mail, run_job, train_on

log = logging.getLogger(__name__)


def _holdout_f1(model: TrainedModel, texts: list[str], y: np.ndarray) -> float:
    p_spam = score_texts(model, texts, 0).p_spam
    return binary_metrics(y, p_spam, model.thresholds["spam"])["f1"]


def _self_train(session, job: Job) -> dict:
    settings = SelfTrainSettings(**(job.params.get("options") or {}))
    active = active_model(session)
    if active is None:
        raise ValueError("self-training starts from the active model: there is none")
    held = holdout_data(session)
    if held is None:
        raise ValueError("self-training measures each round on the holdout set, which is "
                         "not made yet (it needs more labels of each class)")
    holdout_texts, y_holdout = held
    humans, y_humans = labeled_mail(session)
    unlabeled = list(session.scalars(select(Email).where(
        Email.label.is_(None), Email.status.in_((EmailStatus.PARSED, EmailStatus.CLASSIFIED)),
        not_held_out()).order_by(Email.id)))
    unlabeled_texts = model_texts(unlabeled)
    how = {k: v for k, v in recipe(session, active).items() if v is not None}

    def fit(positions: np.ndarray, labels: np.ndarray, number: int) -> TrainedModel:
        """Store the round's pseudo-labels (replacing the last round's), then train."""
        session.execute(delete(PseudoLabel))
        session.add_all(PseudoLabel(
            email_id=unlabeled[i].id, label=Label.SPAM if label else Label.HAM,
            p_spam=float(p), model_id=scored_by, job_id=job.id, round=number)
            for i, label, p in zip(positions.tolist(), labels.tolist(),
                                   last_scores[positions].tolist()))
        session.commit()
        return train_on(session, job.id, how,
                        humans + [unlabeled[i] for i in positions.tolist()],
                        np.concatenate([y_humans, labels]),
                        {"pseudo_labels": len(positions), "self_training_round": number})

    def score(model: TrainedModel) -> np.ndarray:
        nonlocal last_scores, scored_by
        last_scores, scored_by = score_texts(model, unlabeled_texts, 0).p_spam, model.id
        return last_scores

    last_scores, scored_by = np.zeros(len(unlabeled)), active.id
    best, rounds = self_train(
        active, score, fit, lambda model: _holdout_f1(model, holdout_texts, y_holdout),
        float(y_humans.mean()), settings)
    for entry in rounds:
        model = entry.pop("model", active if entry["round"] == 0 else None)
        if model is not None:
            entry["model_id"] = model.id
    if best.id != active.id:
        activate_model(session, best.id)
    return {"model_id": best.id, "activated": best.id != active.id, "rounds": rounds,
            "options": settings.to_dict()}


@shared_task(name=SELF_TRAIN, base=DbTask, bind=True)
def self_training(self: DbTask, job_id: int) -> int | None:
    """Run the self-training job ``job_id``; returns the best model's id."""

    def work(session, job: Job) -> int:
        result = _self_train(session, job)
        summary = (f"model {result['model_id']} "
                   + ("activated" if result["activated"] else "kept: every round did worse")
                   + f" after {len(result['rounds']) - 1} rounds")
        finish(session, job, summary, result, len(result["rounds"]) - 1)
        return result["model_id"]

    return run_job(self.session, job_id, work)
