"""Prometheus metrics, in prometheus-client's multiprocess mode.

Every process of a host (gunicorn's workers, each Celery worker and its pool processes, beat)
writes its samples to files under ``SPAMSIFT_METRICS_DIR`` (default ``var/metrics``), and
``/metrics`` adds up the files of every process on its host, dead ones included, so counters
never go back when a process is replaced. The mode is chosen when prometheus-client is first
imported, so the directory is set in the environment before that import, here, the first
time a metric is used; nothing imports prometheus-client elsewhere.

Gauges that describe the deployment rather than a process (queue depths, the model in use)
are read when ``/metrics`` is scraped (``web.metrics``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from core.config import get_settings

log = logging.getLogger(__name__)

# Seconds: a verdict takes milliseconds to a second, a request up to the longest wait.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 7200)


def metrics_dir() -> Path:
    settings = get_settings()
    return settings.metrics_dir or settings.var_dir / "metrics"


def clear() -> None:
    """Empty the directory; only when no process of the host writes there (``spamsift run``
    before it starts them)."""
    shutil.rmtree(metrics_dir(), ignore_errors=True)


_creating = threading.Lock()
_created: SimpleNamespace | None = None


def metrics() -> SimpleNamespace:
    """Every metric, created once, on first use (after the multiprocess directory is set):
    threads that come first at once wait for one of them (two would register every metric
    twice, and the second would raise)."""
    global _created
    if _created is None:
        with _creating:
            if _created is None:
                _created = _create()
    return _created


def count(update: Callable[[SimpleNamespace], None]) -> None:
    """Apply ``update`` to the metrics. A failure is logged, never raised: counting must not
    fail a delivery, a request or a task."""
    try:
        update(metrics())
    except Exception:
        log.exception("metrics: could not record")


def _create() -> SimpleNamespace:
    directory = metrics_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import Counter, Histogram, values

    # Files named by host and process: containers sharing the directory (compose's metrics
    # volume) each number their processes from 1.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)

    return SimpleNamespace(
        directory=directory,
        requests=Counter("spamsift_http_requests", "HTTP requests answered, by route "
                         "(the URL rule) and status", ["route", "method", "status"]),
        request_seconds=Histogram("spamsift_http_request_seconds", "Time to answer a request",
                                  ["route"], buckets=LATENCY_BUCKETS),
        webhooks=Counter("spamsift_webhook_deliveries", "Webhook deliveries, by provider and "
                         "outcome (accepted; duplicate: a retry of a stored message; refused; "
                         "retry_later: the provider is asked to send it again)",
                         ["provider", "outcome"]),
        verdicts=Counter("spamsift_verdicts", "Verdicts made, by verdict and the kind and id "
                         "of the model that made them", ["verdict", "model_kind", "model_id"]),
        classification_seconds=Histogram(
            "spamsift_classification_seconds", "Time to judge one email in a worker (scoring "
            "and storing the verdict, per email of a batch)", buckets=LATENCY_BUCKETS),
        tasks=Counter("spamsift_tasks", "Celery tasks finished, by task and outcome "
                      "(succeeded, failed, retried)", ["task", "outcome"]),
        task_seconds=Histogram("spamsift_task_seconds", "Time a Celery task ran", ["task"],
                               buckets=TASK_BUCKETS),
        jobs=Counter("spamsift_jobs", "Jobs finished (training, import, re-scoring, "
                     "reindex), by kind and state", ["kind", "state"]),
        scheduled_runs=Counter("spamsift_scheduled_runs", "Scheduled job runs, by job and "
                               "outcome", ["job", "outcome"]),
    )


def _process_identifier() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def exposition(extra=None) -> tuple[bytes, str]:
    """The text format of every process's samples on this host, plus ``extra`` (a
    collector of gauges read at scrape time); returns (body, content type)."""
    directory = metrics().directory
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    if extra is not None:
        registry.register(extra)
    return generate_latest(registry), CONTENT_TYPE_LATEST
