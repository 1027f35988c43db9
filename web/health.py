"""Health: ``GET /healthz`` says the process is up (public, does no I/O, so load balancers
may poll it as often as they like); ``GET /healthz/details`` reports the database, the broker
and the workers serving each queue. The details take a one-second worker broadcast, so they
are for local clients and read-scoped callers only, and cached for a few seconds."""

from __future__ import annotations

import threading
import time
from ipaddress import ip_address

from flask import Blueprint, jsonify, request

from workers.health import check

blueprint = Blueprint("health", __name__)

DETAILS_CACHE_SECONDS = 5.0

_cache_lock = threading.Lock()
_cached: tuple[float, dict, int] | None = None  # (monotonic time, report, status code)


def report() -> tuple[dict, int]:
    """The latest check, made again when older than DETAILS_CACHE_SECONDS; one caller at a
    time makes it, the others wait and share the result."""
    global _cached
    with _cache_lock:
        if _cached is None or time.monotonic() - _cached[0] > DETAILS_CACHE_SECONDS:
            _cached = (time.monotonic(), *check())
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
    refused = local_or_read_scope()
    if refused is not None:
        return refused
    body, code = report()
    return jsonify(body), code


def local_or_read_scope():
    """None for a client on this machine or one with a read-scoped token or session; else
    the refusal (401 or 403) to answer with."""
    if _from_this_machine():
        return None
    from web.auth import read_scope_refusal

    return read_scope_refusal(request.path)
