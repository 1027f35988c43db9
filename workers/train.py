"""Train a classifier on the labeled emails outside the holdout set and add it to the
registry (``core.holdout``: the set is made here, the first time there are labels enough).

A training job's row says what to train (``params``: kind, pooling, make_active, options);
the task reads it from there, so a re-sent job trains the same thing; a retrain (``guard``)
is activated only if the holdout set finds it no worse (``workers.retrain``). One worker
runs a job at a time (an advisory lock on the job); a cancelled job stops at its next step;
a LoRA run whose worker was lost goes on from the checkpoint in its row when the job is
sent again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from celery import shared_task
from sqlalchemy import func, select, update

from core.config import get_settings
from core.db import session_scope
from core.jobs import finish_job
from core.holdout import ensure_holdout, not_held_out
from core.locks import exclusive
from core.models import Email, EmailStatus, EncoderVersion, Job, JobState, Label, TrainedModel
from ml.baseline import train_baseline
from ml.cascade import choose_cascade
from ml.classifiers import CASCADE, LINEAR, TFIDF_LR, TFIDF_NB, validate
from ml.hybrid import HYBRID, train_hybrid
from ml.encoder import model_directory, package_version, weights_name
from ml.linear import check_labels, platt, train_linear_probe
from ml.lora import (LORA, CheckpointMismatch, Hooks, LoraClassifier, LoraSettings, Progress,
                     TrainingStopped, to_artifact, train_lora)
from ml.mlm import MLM, MlmSettings, adapt
from ml.refit import score_histogram
from ml.mlm import to_artifact as mlm_artifact
from ml.odds import sigmoid
from workers.app import DbTask
from workers.client import activate_model
from workers.names import ADAPT_ENCODER, TRAIN_MODEL
from workers.retrain import activate_if_not_worse
from workers.pipeline import EncoderInput, model_texts, window_vectors
from workers.runtime import adapted_encoder, lora_serving

log = logging.getLogger(__name__)

EMBED_BATCH = 256
PROGRESS_EVERY_SECONDS = 2.0  # at most one progress write (and cancel check) per this


def _progress(job_id: int, done: int, total: int, message: str,
              details: dict | None = None) -> None:
    """Job progress in its own transaction, so followers see it while training runs."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:  # deleted under the run, which stops at its next step
            return
        job.done, job.total, job.message = done, total, message
        if details is not None:
            job.result = details
        if job.state == JobState.QUEUED:
            job.state = JobState.RUNNING
            job.started_at = func.clock_timestamp()


def _window_vectors(job_id: int, texts: list[str], how: EncoderInput) -> np.ndarray:
    """The classification window of every text, as the pipeline will read new mail."""
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        _progress(job_id, start, len(texts), "embedding labeled emails")
        parts.append(window_vectors(texts[start:start + EMBED_BATCH], how))
    return np.concatenate(parts)


@dataclass
class Fitted:
    """A classifier fitted on the labeled mail, stored as ``artifact`` and ``blob``, with the
    held-out p(spam) its thresholds are chosen on: out-of-fold for every labeled email, or of
    a validation part only (``held_out``: positions in the labeled mail)."""

    kind: str
    artifact: dict
    blob: bytes | None
    p_held_out: np.ndarray
    params: dict
    encoder: str | None = None
    held_out: np.ndarray | None = None  # None: every labeled email, out of fold
    extra_metrics: dict = field(default_factory=dict)


def _fit(job_id: int, kind: str, texts: list[str], y: np.ndarray, pooling: str | None,
         version: int | None = None) -> Fitted:
    if kind == LINEAR:
        how = EncoderInput.configured(pooling, version)
        vectors = _window_vectors(job_id, texts, how)
        _progress(job_id, len(texts), len(texts), "fitting")
        classifier, oof, params = train_linear_probe(vectors, y)
        params.update(pooling=how.pooling, window=how.window, backend=how.backend,
                      encoder_version=version)
        return Fitted(kind, *classifier.to_artifact(), oof, params, how.space())
    if kind in (TFIDF_NB, TFIDF_LR):
        _progress(job_id, 0, len(texts), "fitting")
        classifier, oof, params = train_baseline(texts, y, kind.split("-")[1],
                                                 normalise=get_settings().tfidf_normalise)
        return Fitted(kind, *classifier.to_artifact(), oof, params)
    raise ValueError(f"cannot train a model of kind {kind!r}")


class _JobHooks:
    """The hooks of a run (LoRA, MLM) inside a job: progress and checkpoints into the job's
    row (throttled), and a stop when the job is cancelled."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.last_write = 0.0  # progress
        self.last_look = 0.0  # cancel

    def progress(self, progress: Progress) -> None:
        now = time.monotonic()
        if (progress.validation_f1 is None and progress.step < progress.total
                and now - self.last_write < PROGRESS_EVERY_SECONDS):
            return
        self.last_write = now
        parts = [f"step {progress.step}/{progress.total}"]
        if progress.loss is not None:
            parts.append(f"loss {progress.loss:.3f}")
        if progress.best_f1 is not None:
            parts.append(f"validation F1 {progress.best_f1:.3f} (best)")
        if progress.eta_seconds is not None:
            parts.append(f"about {_duration(progress.eta_seconds)} left")
        _progress(self.job_id, progress.step, progress.total, " · ".join(parts), {
            "step": progress.step, "total": progress.total, "loss": progress.loss,
            "validation_f1": progress.validation_f1, "best_f1": progress.best_f1,
            "eta_seconds": progress.eta_seconds})

    def checkpoint(self, blob: bytes) -> None:
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == self.job_id).values(checkpoint=blob))

    def cancelled(self) -> bool:
        """Cancelled, or gone (a job deleted under the run)."""
        with session_scope() as session:
            state = session.scalar(select(Job.state).where(Job.id == self.job_id))
        return state in (None, JobState.CANCELLED)

    def saved(self) -> bytes | None:
        with session_scope() as session:
            return session.scalar(select(Job.checkpoint).where(Job.id == self.job_id))

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_look < PROGRESS_EVERY_SECONDS:
            return False
        self.last_look = time.monotonic()
        return self.cancelled()

    def hooks(self) -> Hooks:
        return Hooks(progress=self.progress, checkpoint=self.checkpoint,
                     should_stop=self.should_stop)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _fit_lora(job_id: int, texts: list[str], y: np.ndarray, options: dict,
              version: int | None = None) -> Fitted:
    """Fine-tune with LoRA (``ml.lora``) from the encoder as shipped or an adapted
    ``version``, going on from the job's checkpoint when it has one of this run; thresholds
    come from the validation part, scored by the backend that will serve the model."""
    settings = get_settings()
    lora_settings = LoraSettings.from_dict(options)
    base_dir = model_directory(settings.encoder_package)
    adapted, base_state = adapted_encoder(version) if version is not None else (None, None)
    run = _JobHooks(job_id)
    _progress(job_id, 0, 0, "fine-tuning")
    resume = run.saved()
    try:
        result = train_lora(base_dir, texts, y, lora_settings, run.hooks(), resume=resume,
                            base_state=base_state)
    except CheckpointMismatch:  # the labeled mail changed since: start over
        result = train_lora(base_dir, texts, y, lora_settings, run.hooks(),
                            base_state=base_state)
    base = package_version(settings.encoder_package)
    artifact, blob = to_artifact(result, base)
    artifact["encoder_version"] = version
    p_validation = result.validation_p
    backend = settings.encoder_backend
    if backend != "torch":  # thresholds on the scores the server will give
        served = LoraClassifier.load(artifact=artifact, blob=blob,
                                     **lora_serving(backend, version))
        margins = served.decision([texts[i] for i in result.validation_index])
        calibration = platt(margins, y[result.validation_index])
        artifact["calibration"] = list(calibration)
        p_validation = sigmoid(calibration[0] * margins + calibration[1])
    params = {"lora": lora_settings.to_dict(),
              "base_encoder": weights_name(settings.encoder_package, adapted),
              "encoder_version": version, "backend": backend,
              "steps": result.steps, "resumed_from_step": result.resumed_from,
              "stopped_early": result.stopped_early, "history": result.history,
              "training_seconds": round(result.seconds, 1),
              "trainable_parameters": result.trainable_parameters,
              "artifact_bytes": artifact["artifact_bytes"]}
    return Fitted(LORA, artifact, blob, p_validation, params,
                  held_out=result.validation_index)


def _data_seen(emails: list[Email], y: np.ndarray) -> dict:
    """Which labeled mail a model saw: how much, up to which email, and a digest."""
    digest = hashlib.sha256(",".join(f"{e.id}:{label}" for e, label in zip(emails, y.tolist()))
                            .encode()).hexdigest()[:16]
    return {"emails": len(emails), "last_email_id": max(e.id for e in emails),
            "digest": digest}


def _register(session, fitted: Fitted, y: np.ndarray, data: dict) -> TrainedModel:
    settings = get_settings()
    y_held_out = y if fitted.held_out is None else y[fitted.held_out]
    checked = validate(y_held_out, fitted.p_held_out, settings.target_fpr,
                       settings.max_spam_missed)
    validation = ("out-of-fold" if fitted.held_out is None
                  else f"held-out validation part ({len(y_held_out)} emails)")
    model = TrainedModel(
        kind=fitted.kind, encoder=fitted.encoder,
        # score_reference: the scores its thresholds are chosen on, for the drift check
        params={**fitted.params, "data": data,
                "score_reference": score_histogram(fitted.p_held_out)},
        metrics={**checked.metrics, **fitted.extra_metrics, "validation": validation,
                 "spam": int(y.sum()), "ham": int(len(y) - y.sum())},
        curves=checked.curves, confusion=checked.confusion,
        thresholds=checked.thresholds.to_dict(), train_size=len(y),
        artifact=fitted.artifact, artifact_blob=fitted.blob)
    session.add(model)
    session.flush()
    return model


def _train_cascade(session, job_id: int, texts: list[str], y: np.ndarray,
                   pooling: str | None, data: dict) -> TrainedModel:
    """TF-IDF LR decides the mail it is sure of, a linear model on the encoder the rest
    (``ml.cascade``); both stages are registered as models of their own."""
    settings = get_settings()
    cheap = _fit(job_id, TFIDF_LR, texts, y, None)
    strong = _fit(job_id, LINEAR, texts, y, pooling)
    plan = choose_cascade(y, cheap.p_held_out, strong.p_held_out, settings.target_fpr,
                          settings.max_spam_missed)
    stages = [_register(session, fitted, y, data) for fitted in (cheap, strong)]
    combined, _ = plan.combine(cheap.p_held_out, strong.p_held_out)
    return _register(session, Fitted(
        CASCADE, {}, None, combined,
        {"cheap_model_id": stages[0].id, "strong_model_id": stages[1].id,
         "plan": plan.to_dict()}, strong.encoder,
        extra_metrics={"cheap_share": plan.cheap_share, "strong_f1": plan.strong_f1}), y, data)


def _train_hybrid(session, job_id: int, texts: list[str], y: np.ndarray, pooling: str | None,
                  data: dict) -> TrainedModel:
    """TF-IDF LR and a linear model on the encoder, stacked by logistic regression over
    their out-of-fold scores (``ml.hybrid``); both stages are registered as models too."""
    text = _fit(job_id, TFIDF_LR, texts, y, None)
    language = _fit(job_id, LINEAR, texts, y, pooling)
    stacker, oof, params = train_hybrid(y, text.p_held_out, language.p_held_out)
    stages = [_register(session, fitted, y, data) for fitted in (text, language)]
    return _register(session, Fitted(
        HYBRID, *stacker.to_artifact(), oof,
        {**params, "text_model_id": stages[0].id, "language_model_id": stages[1].id},
        language.encoder), y, data)


def labeled_mail(session) -> tuple[list[Email], np.ndarray]:
    """The labeled emails training reads (outside the holdout set, which is made here the
    first time there are labels enough), and their labels (1 = spam)."""
    ensure_holdout(session, get_settings())
    emails = list(session.scalars(
        select(Email).where(Email.label.is_not(None), not_held_out()).order_by(Email.id)))
    return emails, np.array([e.label == Label.SPAM for e in emails], dtype=int)


def _train(session, job: Job) -> TrainedModel:
    _progress(job.id, 0, 0, "loading labeled emails")
    emails, y = labeled_mail(session)
    return train_on(session, job.id, job.params or {}, emails, y)


def train_on(session, job_id: int, params: dict, emails: list[Email], y: np.ndarray,
             data_note: dict | None = None) -> TrainedModel:
    """Train what ``params`` says (a training job's: kind, pooling, options, encoder
    version) on ``emails`` labeled ``y`` and register it; ``data_note`` joins what the
    model records of the mail it saw."""
    kind, pooling = params.get("kind"), params.get("pooling")
    version = params.get("encoder_version")
    check_labels(y)
    texts = model_texts(emails)
    data = {**_data_seen(emails, y), **(data_note or {})}
    session.commit()  # hold no transaction (nor any lock) while training
    if kind == CASCADE:
        return _train_cascade(session, job_id, texts, y, pooling, data)
    if kind == HYBRID:
        return _train_hybrid(session, job_id, texts, y, pooling, data)
    if kind == LORA:
        fitted = _fit_lora(job_id, texts, y, params.get("options") or {}, version)
    else:
        fitted = _fit(job_id, kind, texts, y, pooling, version)
    return _register(session, fitted, y, data)


def run_job(session, job_id: int, work) -> object | None:
    """Run ``work(session, job)`` for a queued or running job, once across all workers (a
    lock on the job); it finishes the job and returns what to return. A cancelled run ends
    with the job cancelled and nothing kept; a failed one fails the job and raises."""
    with exclusive(f"job:{job_id}") as mine:
        job = session.get(Job, job_id)
        if not mine or job is None or job.state not in (JobState.QUEUED, JobState.RUNNING):
            log.info("job %s not run here: %s", job_id,
                     "another worker runs it" if not mine else
                     "no such job" if job is None else f"it is {job.state.value}")
            return None
        session.commit()  # read the job afresh from here on
        try:
            return work(session, job)
        except TrainingStopped:
            session.rollback()
            with session_scope() as stopped:
                job = stopped.get(Job, job_id)
                if job is not None:
                    job.message = f"cancelled at step {job.done} of {job.total}"
                    job.checkpoint = None
            return None
        except Exception as exc:
            session.rollback()
            with session_scope() as failed:
                job = failed.get(Job, job_id)
                if job is not None:
                    finish_job(failed, job, JobState.FAILED,
                               message=f"{type(exc).__name__}: {exc}")
                    job.checkpoint = None
            raise


def finish(session, job: Job, message: str, result: dict, units: int) -> None:
    finish_job(session, job, JobState.SUCCEEDED, message=message, result=result)
    job.done = job.total = job.total or units
    job.checkpoint = None


@shared_task(name=TRAIN_MODEL, base=DbTask, bind=True)
def train_model(self: DbTask, job_id: int) -> int | None:
    """Run the training job ``job_id``; returns the new model's id (None when the job is
    finished, cancelled, or another worker runs it)."""

    def work(session, job: Job) -> int:
        model = _train(session, job)
        result = {"model_id": model.id, "metrics": model.metrics}
        message = f"trained model {model.id}"
        if job.params.get("guard"):
            result["retrain"] = activate_if_not_worse(session, model, job.params["guard"])
            message += "; " + result["retrain"]["reason"]
        elif job.params.get("make_active", True):
            activate_model(session, model.id)
        finish(session, job, message, result, model.train_size)
        return model.id

    return run_job(self.session, job_id, work)


@shared_task(name=ADAPT_ENCODER, base=DbTask, bind=True)
def adapt_encoder(self: DbTask, job_id: int) -> int | None:
    """Masked-LM adaptation of the encoder on the stored mail, labeled or not (``ml.mlm``),
    stored as a new encoder version; returns its id."""

    def work(session, job: Job) -> int:
        settings = get_settings()
        options = MlmSettings.from_dict(job.params.get("options") or {})
        _progress(job.id, 0, 0, "reading mail")
        emails = list(session.scalars(select(Email).where(Email.status != EmailStatus.FAILED)
                                      .order_by(Email.id)))
        if not emails:
            raise ValueError("no mail to adapt the encoder to")
        texts = model_texts(emails)
        data = {"emails": len(emails), "labeled": sum(e.label is not None for e in emails),
                "last_email_id": emails[-1].id}
        session.commit()  # hold no transaction while training
        base = package_version(settings.encoder_package)
        result = adapt(model_directory(settings.encoder_package), texts, options,
                       _JobHooks(job.id).hooks())
        artifact, blob = mlm_artifact(result, options, base)
        version = EncoderVersion(
            base=base, method=MLM, data=data, artifact=artifact, artifact_blob=blob,
            params={"mlm": options.to_dict(), "seconds": round(result.seconds, 1),
                    "trainable_parameters": result.trainable_parameters},
            metrics={"held_out_loss_before": result.loss_before,
                     "held_out_loss_after": result.loss_after, "history": result.history})
        session.add(version)
        session.flush()
        finish(session, job, f"encoder version {version.id} ({version.name})",
                {"encoder_version": version.id, "name": version.name,
                 "metrics": version.metrics}, len(emails))
        return version.id

    return run_job(self.session, job_id, work)
