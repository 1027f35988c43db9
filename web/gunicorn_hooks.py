"""gunicorn server hooks (``spamsift web`` passes this module as gunicorn's config)."""

from __future__ import annotations

from core.collector import settle_after_start


def post_worker_init(worker) -> None:
    """The app is loaded: tune the garbage collector (``core.collector`` says why)."""
    settle_after_start()
