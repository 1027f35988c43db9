"""What workers tell about their tasks, from Celery's signals: metrics (how long each task
ran and how it ended) and logs (each task's lines carry the request id of the web request
that caused it, sent along in a message header)."""

from __future__ import annotations

import time

from celery.signals import (before_task_publish, setup_logging, task_failure, task_postrun,
                            task_prerun, task_retry)

from core import logs
from core.config import get_settings
from core.metrics import count

REQUEST_ID = "request_id"  # the message header
_started: dict[str, float] = {}  # task id → when it started, in this process


@setup_logging.connect
def _configure_logging(**_) -> None:
    """Celery leaves logging to us (JSON lines, as every spamsift process writes)."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)


@before_task_publish.connect
def _send_request_id(headers=None, **_) -> None:
    request_id = logs.current_request_id()
    if request_id and headers is not None:
        headers[REQUEST_ID] = request_id


@task_prerun.connect
def _task_started(task_id=None, task=None, **_) -> None:
    _started[task_id] = time.perf_counter()
    logs.bind_task(getattr(task.request, REQUEST_ID, None), task.name, task_id)


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_) -> None:
    started = _started.pop(task_id, None)
    seconds = time.perf_counter() - started if started is not None else None

    def record(m) -> None:
        if seconds is not None:
            m.task_seconds.labels(task.name).observe(seconds)
        if state == "SUCCESS":
            m.tasks.labels(task.name, "succeeded").inc()

    count(record)


@task_failure.connect
def _task_failed(sender=None, **_) -> None:
    count(lambda m: m.tasks.labels(sender.name, "failed").inc())


@task_retry.connect
def _task_retried(sender=None, **_) -> None:
    count(lambda m: m.tasks.labels(sender.name, "retried").inc())
