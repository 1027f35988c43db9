"""The Celery app, its queues, the task base class, and how work is enqueued.

Importing this module is cheap: no broker connection, no model. The configuration (broker
URL included) is read from settings the first time Celery needs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from celery import Celery
from kombu import Queue
from sqlalchemy.orm import Session

from core import services
from core.config import get_settings
from core.db import after_commit, session_scope
from workers.guard import GuardedTask

log = logging.getLogger(__name__)

# Queues by purpose; each can be given its own workers.
REALTIME = "realtime"  # webhook verdicts, query embeddings
BULK = "bulk"  # parsing and embedding imported mail
TRAINING = "training"  # model fits
QUEUES = (REALTIME, BULK, TRAINING)

# Task names: the web app and the CLI enqueue by name and never import the task modules.
PARSE_EMAILS = "spamsift.parse_emails"
EMBED_EMAILS = "spamsift.embed_emails"
CLASSIFY_EMAIL = "spamsift.classify_email"
TRAIN_MODEL = "spamsift.train_model"
IMPORT_UPLOAD = "spamsift.import_upload"
DELIVER_VERDICT = "spamsift.deliver_verdict"
EMBED_QUERY = "spamsift.embed_query"
ANSWER_QUESTION = "spamsift.answer_question"
RECONCILE = "spamsift.reconcile"
CLASSIFY_WAITING = "spamsift.classify_waiting"

TASK_ROUTES = {
    PARSE_EMAILS: {"queue": BULK},
    EMBED_EMAILS: {"queue": BULK},
    CLASSIFY_EMAIL: {"queue": REALTIME},
    TRAIN_MODEL: {"queue": TRAINING},
    IMPORT_UPLOAD: {"queue": BULK},
    DELIVER_VERDICT: {"queue": REALTIME},
    EMBED_QUERY: {"queue": REALTIME},
    ANSWER_QUESTION: {"queue": REALTIME},
    RECONCILE: {"queue": BULK},
    CLASSIFY_WAITING: {"queue": BULK},
}


def queue_time_limits(settings) -> dict[str, int]:
    """The hard time limit of each queue's tasks, in seconds."""
    return {REALTIME: settings.realtime_time_limit, BULK: settings.bulk_time_limit,
            TRAINING: settings.training_time_limit}


class QueueTimeLimits:
    """Celery task annotation: each task gets its queue's hard time limit, and a soft one up
    to a minute earlier so it can record why it stopped (tasks not routed run on bulk).
    Time limits need the prefork pool (the default)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits

    def annotate(self, task) -> dict:
        hard = self.limits[TASK_ROUTES.get(task.name, {}).get("queue", BULK)]
        return {"time_limit": hard, "soft_time_limit": hard - min(60, max(1, hard // 10))}


def _celery_config() -> dict:
    settings = get_settings()
    broker = services.broker_url(settings)
    limits = queue_time_limits(settings)
    return {
        "broker_url": broker,
        # Results only for the few tasks a caller waits on (query embeddings).
        "result_backend": broker if broker.startswith("redis") else "cache+memory://",
        "result_expires": 300,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": BULK,
        "task_routes": TASK_ROUTES,
        # A task whose worker dies goes back to its queue; GuardedTask gives up on it after
        # SPAMSIFT_MAX_TASK_DELIVERIES deliveries.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_annotations": QueueTimeLimits(limits),
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # acks_late re-delivers unacknowledged tasks after this long: longer than any task.
        "broker_transport_options": {"visibility_timeout": max(limits.values()) + 3600},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": _beat_schedule(settings.reconcile_after_seconds),
        "timezone": "UTC",
    }


def _beat_schedule(reconcile_after_seconds: int) -> dict:
    from workers.schedule import beat_schedule

    return beat_schedule(reconcile_after_seconds)


celery_app = Celery("spamsift", task_cls=GuardedTask,
                    include=["workers.ingest", "workers.embed", "workers.classify",
                             "workers.train", "workers.importing", "workers.callback",
                             "workers.search", "workers.maintenance"])
celery_app.add_defaults(_celery_config)  # a callable: evaluated when first needed


class DbTask(GuardedTask):
    """A task that owns a database session: committed when the task returns, rolled back
    when it raises. Tasks reach it as ``self.session``."""

    _local = threading.local()

    @property
    def session(self) -> Session:
        session = getattr(self._local, "session", None)
        if session is None:
            raise RuntimeError("the task's session is only available while it runs")
        return session

    def call_in_context(self, *args, **kwargs):
        with session_scope() as session:
            self._local.session = session
            try:
                return super().call_in_context(*args, **kwargs)
            finally:
                self._local.session = None


class BrokerUnavailable(RuntimeError):
    """The broker refused a message; the reconciler will enqueue the work later."""


def send(name: str, args: Sequence = (), kwargs: dict | None = None) -> None:
    """Enqueue a task by name on its queue; raises ``BrokerUnavailable`` if the broker is down."""
    try:
        # No time limits in the message: the worker that runs it applies its queue's own
        # (Celery would stamp the sender's, where the task is registered).
        celery_app.send_task(
            name, args=list(args), kwargs=kwargs or {}, queue=TASK_ROUTES[name]["queue"],
            time_limit=None, soft_time_limit=None,
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


def classify_waiting_after_commit(session: Session) -> None:
    """Call when a model becomes active: once committed, the mail embedded while no model
    was active is sent to be classified (if this message is lost, the reconciler does it)."""
    send_after_commit(session, CLASSIFY_WAITING)


def queue_training(session: Session, kind: str, pooling: str | None = None,
                   make_active: bool = True):
    """Create a queued training job and send it to the training queue once committed."""
    from core.jobs import create_job
    from core.models import JobState

    job = create_job(session, "train", state=JobState.QUEUED,
                     params={"kind": kind, "pooling": pooling})
    send_after_commit(session, TRAIN_MODEL, [job.id, kind],
                      {"pooling": pooling, "make_active": make_active})
    return job
