"""Task metrics from Celery's signals: how long each task ran and how it ended."""

from __future__ import annotations

import time

from celery.signals import task_failure, task_postrun, task_prerun, task_retry

from core.metrics import metrics

_started: dict[str, float] = {}  # task id → when it started, in this process


@task_prerun.connect
def _task_started(task_id=None, **_) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_) -> None:
    started = _started.pop(task_id, None)
    recorded = metrics()
    if started is not None:
        recorded.task_seconds.labels(task.name).observe(time.perf_counter() - started)
    if state == "SUCCESS":
        recorded.tasks.labels(task.name, "succeeded").inc()


@task_failure.connect
def _task_failed(sender=None, **_) -> None:
    metrics().tasks.labels(sender.name, "failed").inc()


@task_retry.connect
def _task_retried(sender=None, **_) -> None:
    metrics().tasks.labels(sender.name, "retried").inc()
