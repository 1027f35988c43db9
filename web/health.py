"""GET /healthz: the database, the broker, and which workers serve each queue."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from core.db import get_engine
from workers.app import QUEUES, celery_app

blueprint = Blueprint("health", __name__)

INSPECT_TIMEOUT_SECONDS = 1.0


def _database() -> dict:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": _first_line(exc)}


def _broker() -> dict:
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": _first_line(exc)}


def workers_by_queue() -> dict[str, list[str]]:
    by_queue: dict[str, list[str]] = {queue: [] for queue in QUEUES}
    replies = celery_app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    for worker, queues in sorted(replies.items()):
        for queue in queues:
            by_queue.setdefault(queue["name"], []).append(worker)
    return by_queue


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@blueprint.get("/healthz")
def healthz():
    """200 when the database and broker answer (``degraded`` if a queue has no worker);
    503 when either is down."""
    database = _database()
    broker = _broker()
    workers = workers_by_queue() if broker["ok"] else {queue: [] for queue in QUEUES}
    if not (database["ok"] and broker["ok"]):
        status, code = "down", 503
    elif not all(workers.get(queue) for queue in QUEUES):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return jsonify(status=status, database=database, broker=broker, workers=workers), code
