"""What the web app and the CLI may call: enqueue work, take in one message, change models.

Nothing here loads a model. Work is enqueued only once the rows it reads are committed; a
broker that is down never loses mail, because the reconciler re-sends what was left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from core import services
from core.config import get_settings
from core.db import after_commit, session_scope
from core.intake import Stored, store_delivery
from core.jobs import create_job, finish_job
from core.models import EncoderVersion, Job, JobState, TrainedModel
from core.registry import activate, roll_back
from ml.encoder import encoder_name
from ml.lora_settings import LoraSettings
from workers.app import celery_app
from workers.names import (ADAPT_ENCODER, CLASSIFY_EMAIL, LORA, RESCORE, SELF_TRAIN,
                           TASK_ROUTES, TRAIN_MODEL, queue_lists)

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker refused a message; the reconciler will enqueue the work later."""


def send(name: str, args: Sequence = (), kwargs: dict | None = None) -> None:
    """Enqueue a task by name on its queue; raises ``BrokerUnavailable`` if the broker is down."""
    try:
        # No time limits in the message: the worker that runs it applies its queue's own
        # (Celery would stamp the sender's, where the task is registered).
        route = TASK_ROUTES[name]
        celery_app.send_task(
            name, args=list(args), kwargs=kwargs or {}, queue=route["queue"],
            priority=route.get("priority"), time_limit=None, soft_time_limit=None,
            # Nobody waits for these results: without this, a Redis outage keeps the caller
            # (a webhook request) retrying the result backend for about 20 s.
            ignore_result=True,
            retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                      "interval_step": 0.5},
        )
    except Exception as exc:  # kombu raises OperationalError and friends
        raise BrokerUnavailable(f"broker unavailable: {exc}") from exc


def send_after_commit(session: Session, name: str, args: Sequence = (),
                      kwargs: dict | None = None) -> None:
    """Enqueue once the session commits. A broker failure is logged, not raised: the rows are
    safe in the database and the reconciler will pick them up."""

    def enqueue() -> None:
        try:
            send(name, args, kwargs)
        except BrokerUnavailable as exc:
            log.warning("%s not enqueued (%s); the reconciler will retry", name, exc)

    after_commit(session, enqueue)


def send_in_batches(name: str, ids: Sequence[int], batch_size: int, **kwargs) -> None:
    for start in range(0, len(ids), batch_size):
        send(name, [list(ids[start:start + batch_size])], kwargs)


def waiting_messages(queue: str, before: int | None = None) -> int:
    """How many messages wait on ``queue`` (with ``before``: only those taken before that
    priority). Raises redis-py's errors when the broker is unavailable."""
    redis = services.redis_client()
    return sum(redis.llen(name) for name in queue_lists(queue, before))


def index_space() -> str:
    """The vector space search uses (configured encoder, pooling and backend), named without
    loading the encoder."""
    settings = get_settings()
    return encoder_name(settings.encoder_package, settings.encoder_pooling,
                        settings.encoder_backend)


def accept_message(raw: bytes, source: str, content_digest: bytes | None = None) -> Stored:
    """Take in one message (webhooks, ``/api/classify``, ``spamsift classify``): store it,
    recognising a retry of one already stored (``core.intake.store_delivery``), commit, and
    send a new one to the realtime queue. Raises SQLAlchemy's ``DBAPIError`` when the database
    is unavailable (nothing stored: the caller answers so the sender retries)."""
    with session_scope() as session:
        stored = store_delivery(session, raw, source, content_digest)
        if stored.created:
            send_after_commit(session, CLASSIFY_EMAIL, [stored.email_id])
    return stored


def rescore_after_commit(session: Session, model: TrainedModel) -> int:
    """A model became active: once committed, it judges the mail judged by another model, or
    by none (recent and unlabeled mail first; ``workers.tasks.rescore``). Returns the job id
    that shows the progress."""
    job = create_job(session, "rescore", state=JobState.QUEUED,
                     params={"model_id": model.id})
    send_after_commit(session, RESCORE, [job.id])
    return job.id


def activate_model(session: Session, model_id: int) -> TrainedModel:
    model = activate(session, model_id)
    rescore_after_commit(session, model)
    return model


def roll_back_model(session: Session) -> TrainedModel:
    """Activate the model that was active before; mail it judged points at its verdicts
    again without being judged twice."""
    model = roll_back(session)
    rescore_after_commit(session, model)
    return model


def training_job(session: Session, kind: str, pooling: str | None = None,
                 make_active: bool = True, options: dict | None = None,
                 encoder_version: int | None = None, guard: dict | None = None) -> Job:
    """A queued training job: its row says what to train, so a re-send trains the same.
    ``guard`` (a retrain: the active model's id and why): the new model is activated only
    if the holdout set finds it no worse (``workers.retrain``). Raises ValueError for
    options the kind does not take or out of range, or an unknown encoder version."""
    if kind == LORA:
        options = LoraSettings.from_dict(options or {}).to_dict()  # every setting recorded
    elif options:
        raise ValueError(f"options apply to LoRA training only, not to {kind}")
    if encoder_version is not None:
        if kind not in (LORA, "linear"):
            raise ValueError(f"an adapted encoder version applies to lora and linear models, "
                             f"not to {kind}")
        if session.get(EncoderVersion, encoder_version) is None:
            raise ValueError(f"no encoder version {encoder_version}")
    return create_job(session, "train", state=JobState.QUEUED, params={
        "kind": kind, "pooling": pooling, "make_active": make_active and guard is None,
        "options": options or {}, "encoder_version": encoder_version, "guard": guard})


def queue_training(session: Session, kind: str, pooling: str | None = None,
                   make_active: bool = True, options: dict | None = None,
                   encoder_version: int | None = None, guard: dict | None = None) -> Job:
    """Create a queued training job and send it to the training queue once committed."""
    job = training_job(session, kind, pooling, make_active, options, encoder_version, guard)
    send_after_commit(session, TRAIN_MODEL, [job.id])
    return job


def queue_adaptation(session: Session, options: dict | None = None) -> Job:
    """Queue masked-LM adaptation of the encoder to the stored mail (a new encoder version).
    Raises ValueError for options out of range."""
    from ml.mlm import MlmSettings

    options = MlmSettings.from_dict(options or {}).to_dict()
    job = create_job(session, "adapt", state=JobState.QUEUED,
                     params={"method": "mlm", "options": options})
    send_after_commit(session, ADAPT_ENCODER, [job.id])
    return job


def queue_self_training(session: Session, options: dict | None = None) -> Job:
    """Queue self-training from the active model (``workers.selftrain``). Raises ValueError
    for options out of range."""
    from ml.selftrain import SelfTrainSettings

    options = SelfTrainSettings(**(options or {})).to_dict()
    job = create_job(session, "selftrain", state=JobState.QUEUED, params={"options": options})
    send_after_commit(session, SELF_TRAIN, [job.id])
    return job


def cancel_job(session: Session, job_id: int) -> Job:
    """Mark a queued or running job cancelled; its worker stops at its next step (training,
    re-scoring) and nothing sends it again."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise LookupError(f"no job with id {job_id}")
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        raise ValueError(f"job {job_id} is {job.state.value}; only queued or running jobs "
                         "can be cancelled")
    finish_job(session, job, JobState.CANCELLED, message="cancelled")
    session.flush()
    session.refresh(job)  # load finished_at, so the row is whole once detached
    return job
