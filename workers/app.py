"""The Celery app, its configuration and the task base class.

Importing this module is cheap: no broker connection, no model. The configuration (broker
URL included) is read from settings the first time Celery needs it.
"""

from __future__ import annotations

import threading

from celery import Celery
from celery.signals import worker_process_init, worker_ready
from kombu import Queue
from sqlalchemy.orm import Session

from core import services
from core.collector import settle_after_start
from core.config import get_settings
from core.db import session_scope
from workers.guard import GuardedTask
from workers.names import BULK, PRIORITY_STEPS, QUEUES, REALTIME, TASK_ROUTES, TRAINING


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
        "broker_transport_options": {"visibility_timeout": max(limits.values()) + 3600,
                                     "priority_steps": PRIORITY_STEPS},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # A pool process loads the active model as it starts (``_warm_up``): give it time.
        "worker_proc_alive_timeout": 120,
        "worker_send_task_events": False,
        "beat_schedule": _beat_schedule(settings),
        "timezone": "UTC",
    }


def _beat_schedule(settings) -> dict:
    from workers.schedule import beat_schedule

    return beat_schedule(settings)


celery_app = Celery("spamsift", task_cls=GuardedTask,
                    include=["workers.tasks", "workers.train", "workers.importing",
                             "workers.callback", "workers.search", "workers.maintenance",
                             "workers.retrain", "workers.selftrain",
                             "workers.scheduled_learning"])
celery_app.add_defaults(_celery_config)  # a callable: evaluated when first needed

import workers.observe  # noqa: E402,F401  (task metrics, by Celery's signals)


@worker_process_init.connect
def _warm_up(**_) -> None:
    """Each pool process loads the active model as it starts, not on its first email; then
    the garbage collector is tuned (``core.collector`` says why)."""
    from workers.runtime import warm_up

    warm_up()
    settle_after_start()


@worker_ready.connect
def _settle_consumer(**_) -> None:
    """The same for the process that fetches messages and hands them to the pool."""
    settle_after_start()


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
