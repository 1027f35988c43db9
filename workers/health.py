"""Health checks shared by the web app's health routes and ``spamsift health`` (container
healthchecks): the database, the broker, and the workers serving each queue."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from sqlalchemy import text

from core.db import get_engine
from workers.app import celery_app
from workers.names import QUEUES

INSPECT_TIMEOUT_SECONDS = 1.0


def database() -> dict:
    """{"ok": True}, or {"ok": False, "error": the first line of what went wrong}."""
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": first_line(exc)}


def broker() -> dict:
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": first_line(exc)}


def workers_by_queue() -> dict[str, list[str]]:
    by_queue: dict[str, list[str]] = {queue: [] for queue in QUEUES}
    replies = celery_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    for worker, queues in sorted(replies.items()):
        for queue in queues:
            by_queue.setdefault(queue["name"], []).append(worker)
    return by_queue


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def check() -> tuple[dict, int]:
    """200 when the database and broker answer (``degraded`` if a queue has no worker);
    503 when either is down."""
    database_state = database()
    broker_state = broker()
    workers = workers_by_queue() if broker_state["ok"] else {queue: [] for queue in QUEUES}
    if not (database_state["ok"] and broker_state["ok"]):
        status, code = "down", 503
    elif not all(workers.get(queue) for queue in QUEUES):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    checked_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return {"status": status, "database": database_state, "broker": broker_state,
            "workers": workers, "checked_at": checked_at}, code


def this_host_serves(queue: str) -> bool:
    """Whether a worker on this host (its node name ends with ``@`` and this host's name, as
    ``spamsift worker`` names it) consumes ``queue``."""
    suffix = "@" + socket.gethostname()
    return any(worker.endswith(suffix) for worker in workers_by_queue().get(queue, []))
