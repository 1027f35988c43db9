"""Calls into realtime workers for processes that must not load the encoder (web, CLI).

Only the Celery app is imported here: no torch, no scikit-learn.
"""

from __future__ import annotations

import numpy as np
from celery.exceptions import TimeoutError as CeleryTimeout

from workers.app import ANSWER_QUESTION, EMBED_QUERY, REALTIME, celery_app


def _call(name: str, args: list, timeout: float):
    try:
        return celery_app.send_task(name, args=args, queue=REALTIME).get(timeout=timeout)
    except CeleryTimeout as exc:
        raise TimeoutError(f"no realtime worker answered in {timeout:.0f} s") from exc


def remote_query_embedder(timeout: float = 10.0):
    """``embed_query`` for core.search.search: (encoder name, vector) from a worker."""

    def embed(text: str):
        result = _call(EMBED_QUERY, [text], timeout)
        return result["encoder"], np.asarray(result["vector"], dtype=np.float32)

    return embed


def ask_remote(question: str, filters: dict | None = None, timeout: float = 120.0) -> dict:
    """Retrieve and answer on a realtime worker."""
    return _call(ANSWER_QUESTION, [question, filters or {}], timeout)
