"""Logs: one JSON object per line on stderr (structlog over the standard library), or a
readable line with ``SPAMSIFT_LOG_FORMAT=console``.

Every line written while a web request or a Celery task runs carries its ``request_id``:
the web app takes it from the request's ``X-Request-ID`` (or makes one), every task sent
meanwhile carries it in a message header, and the worker binds it while the task runs, so
the tasks a webhook caused, and theirs, log under the webhook's id. Log lines name emails
by id, never by their content; secrets in webhook URLs are redacted (``web.access_log``).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
# An id a client may choose: short, and nothing that could forge a log line.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(log_format: str) -> logging.Formatter:
    """A formatter that renders standard-library records (with their ``extra`` fields) as
    structlog renders its own events."""
    renderer = (structlog.processors.JSONRenderer() if log_format == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer])


def configure(level: str, log_format: str) -> None:
    """Route every logger of this process to stderr in ``log_format`` ("json" or
    "console")."""
    # The stream the process started with: a caller that swaps sys.stderr for a while (as
    # click's test runner does) keeps other threads' lines out of what it captures.
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.spamsift = True
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if getattr(h, "spamsift", False)]:
        root.removeHandler(earlier)  # configured again (Celery's start): one handler
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)


def start_request(given: str | None) -> str:
    """Bind a request id for the work this thread does now: ``given`` if acceptable, else a
    new one; returns it."""
    request_id = given if given and _ACCEPTABLE_ID.fullmatch(given) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def bind_task(request_id: str | None, task: str, task_id: str) -> None:
    """What a worker's lines carry while it runs a task (and after, until the next one)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task=task, task_id=task_id)
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id)


def current_request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


def end_request() -> None:
    structlog.contextvars.clear_contextvars()
