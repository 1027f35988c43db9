"""Calls into realtime workers for processes that must not load the encoder (web, CLI).

Only the Celery app is imported here: no torch, no scikit-learn.
"""

from __future__ import annotations

import numpy as np
from celery.exceptions import TimeoutError as CeleryTimeout

from core.config import get_settings
from workers.app import celery_app
from workers.names import ANSWER_QUESTION, EMBED_QUERY, REALTIME


def request_wait_seconds(limit: float) -> float:
    """``limit``, cut to what a web request may wait (it must answer before its timeout)."""
    return min(limit, get_settings().longest_request_wait_ms / 1000)


def _call(name: str, args: list, timeout: float):
    try:
        return celery_app.send_task(name, args=args, queue=REALTIME).get(timeout=timeout)
    except CeleryTimeout as exc:
        raise TimeoutError(f"no realtime worker answered in {timeout:.0f} s") from exc


def remote_query_embedder(timeout: float | None = None):
    """``embed_query`` for core.search.search: (encoder name, vector) from a worker."""
    timeout = timeout if timeout is not None else request_wait_seconds(10.0)

    def embed(text: str):
        result = _call(EMBED_QUERY, [text], timeout)
        return result["encoder"], np.asarray(result["vector"], dtype=np.float32)

    return embed


def ask_remote(question: str, filters: dict | None = None, timeout: float | None = None
               ) -> dict:
    """Retrieve and answer on a realtime worker (by default within a web request's wait)."""
    timeout = timeout if timeout is not None else request_wait_seconds(120.0)
    return _call(ANSWER_QUESTION, [question, filters or {}], timeout)
