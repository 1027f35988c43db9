"""Retraining on feedback, guarded by the holdout set.

The scheduled ``retrain`` job counts the labels given since the active model was trained.
With ``SPAMSIFT_RETRAIN_MIN_LABELS`` of them, or any once the model is older than
``SPAMSIFT_RETRAIN_MAX_AGE_DAYS``, it queues a training job for a model of the active kind
(same pooling, options and encoder version). That job trains on the labeled mail outside the
holdout set, then judges the holdout set with the new model and the active one; the new
model is activated only if it is not worse (``ml.promotion``). Either way it stays in the
registry, and the job's result says why.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from celery import shared_task
from sqlalchemy import func, select

from core.config import Settings, get_settings
from core.holdout import holdout_emails, needed_per_class
from core.models import Feedback, Job, JobState, Label, TrainedModel
from core.registry import active_model
from ml.classifiers import LINEAR
from ml.lora_settings import LORA
from ml.promotion import compare
from workers.app import DbTask
from workers.client import activate_model, queue_training
from workers.names import RETRAIN
from workers.pipeline import model_texts, score_texts
from workers.runtime import STAGE_KEYS
from workers.schedule import run_scheduled

log = logging.getLogger(__name__)


def recipe(session, model: TrainedModel) -> dict:
    """How to train another model like ``model``: queue_training's arguments."""
    params = model.params or {}
    if model.kind in STAGE_KEYS:  # the encoder stage says how it read the mail
        params = session.get(TrainedModel, params[STAGE_KEYS[model.kind][1]]).params or {}
    return {"kind": model.kind,
            "pooling": params.get("pooling") if model.kind != LORA else None,
            "options": params.get("lora") if model.kind == LORA else None,
            "encoder_version": (params.get("encoder_version")
                                if model.kind in (LINEAR, LORA) else None)}


def labels_since(session, model: TrainedModel) -> int:
    """Labels given (or changed) by people since ``model`` was trained."""
    return session.scalar(select(func.count()).select_from(Feedback)
                          .where(Feedback.created_at > model.created_at))


def due_reason(session, model: TrainedModel, settings: Settings) -> tuple[str | None, int]:
    """Why a retrain is due now (None: it is not), and the new labels counted."""
    new_labels = labels_since(session, model)
    if new_labels >= settings.retrain_min_labels:
        return f"{new_labels} new labels since model {model.id}", new_labels
    age = session.scalar(select(func.now() - TrainedModel.created_at)
                         .where(TrainedModel.id == model.id))
    if new_labels and age > timedelta(days=settings.retrain_max_age_days):
        return (f"model {model.id} is older than {settings.retrain_max_age_days} days and "
                f"{new_labels} new labels arrived"), new_labels
    return None, new_labels


def _retrain(session, settings: Settings, force: bool) -> tuple[str, int | None]:
    model = active_model(session)
    if model is None:
        return "no active model to retrain", None
    pending = session.scalar(select(Job.id).where(
        Job.kind == "train", Job.state.in_((JobState.QUEUED, JobState.RUNNING)),
        Job.params["guard"]["active_model_id"].is_not(None)))
    if pending is not None:
        return f"retraining job {pending} has not finished yet", None
    reason, new_labels = due_reason(session, model, settings)
    if reason is None and not force:
        return (f"not due: {new_labels} new labels since model {model.id} (retrains at "
                f"{settings.retrain_min_labels})"), None
    reason = reason or f"asked for ({new_labels} new labels since model {model.id})"
    job = queue_training(session, **recipe(session, model),
                         guard={"active_model_id": model.id, "reason": reason})
    session.commit()
    return f"queued training job {job.id}: {reason}", job.id


@shared_task(name=RETRAIN, base=DbTask, bind=True)
def retrain(self: DbTask, force: bool = False, from_beat: bool = False) -> int | None:
    """Queue a guarded training job when a retrain is due (``force``: now); returns the
    job's id, or None when none was queued."""
    settings = get_settings()
    return run_scheduled("retrain", lambda: _retrain(self.session, settings, force), settings,
                         from_beat)


def holdout_data(session) -> tuple[list[str], np.ndarray] | None:
    """The holdout set as model input and the labels it keeps (1 = spam); None before it
    is made."""
    held = holdout_emails(session)
    if not held:
        return None
    return (model_texts([email for email, _ in held]),
            np.array([label == Label.SPAM for _, label in held], dtype=int))


def activate_if_not_worse(session, candidate: TrainedModel, guard: dict) -> dict:
    """Judge the holdout set with the candidate and with the model that was active when the
    retrain was queued (the active one now, if that one is gone); activate the candidate if
    it is not worse. Returns what was decided and why, for the job's result."""
    settings = get_settings()
    held = holdout_data(session)
    if held is None:
        return {"activated": False, "reason": (
            "kept the active model: there is no holdout set to compare on yet (it is made "
            f"once each class has {needed_per_class(settings)} labels)")}
    texts, y = held
    active = session.get(TrainedModel, guard["active_model_id"]) or active_model(session)
    comparison = compare(
        y, score_texts(candidate, texts, 0).p_spam, candidate.thresholds["spam"],
        score_texts(active, texts, 0).p_spam, active.thresholds["spam"],
        settings.retrain_tolerance)
    if comparison.accepted:
        activate_model(session, candidate.id)
    log.info("retrain: model %s %s model %s: %s", candidate.id,
             "replaces" if comparison.accepted else "does not replace", active.id,
             comparison.reason)
    return {"activated": comparison.accepted, "against_model_id": active.id,
            "reason": ("activated: " if comparison.accepted else "kept the active model: ")
            + comparison.reason, "holdout": comparison.to_dict()}
