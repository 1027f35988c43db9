"""Health: ``GET /healthz`` says the process is up (public, does no I/O, so load balancers
may poll it as often as they like); ``GET /healthz/details`` reports the database, the broker
and the workers serving each queue. The details take a one-second worker broadcast, so they
are for local clients and read-scoped callers only, and cached for a few seconds."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from ipaddress import ip_address

from flask import Blueprint, jsonify, request
from sqlalchemy import text

from core.db import get_engine
from core.models import Scope
from workers.app import celery_app
from workers.names import QUEUES

blueprint = Blueprint("health", __name__)

INSPECT_TIMEOUT_SECONDS = 1.0
DETAILS_CACHE_SECONDS = 5.0

_cache_lock = threading.Lock()
_cached: tuple[float, dict, int] | None = None  # (monotonic time, report, status code)


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


def _check() -> tuple[dict, int]:
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
    checked_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return {"status": status, "database": database, "broker": broker, "workers": workers,
            "checked_at": checked_at}, code


def report() -> tuple[dict, int]:
    """The latest check, made again when older than DETAILS_CACHE_SECONDS; one caller at a
    time makes it, the others wait and share the result."""
    global _cached
    with _cache_lock:
        if _cached is None or time.monotonic() - _cached[0] > DETAILS_CACHE_SECONDS:
            _cached = (time.monotonic(), *_check())
        return _cached[1], _cached[2]


def _from_this_machine() -> bool:
    try:
        return ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@blueprint.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify(status="ok")


@blueprint.get("/healthz/details")
def details():
    """Database, broker and workers per queue, for a client on this machine (behind a proxy
    on this machine set SPAMSIFT_TRUSTED_PROXIES) or a token or session with read scope."""
    if not _from_this_machine():
        from web.auth import api_user

        user = api_user()
        if user is None:
            return jsonify(error="authentication required: an API bearer token"), 401
        if not user.allows(Scope.READ):
            return jsonify(error="this report needs the read scope"), 403
    body, code = report()
    return jsonify(body), code
