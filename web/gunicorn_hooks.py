"""gunicorn server hooks (``spamsift web`` passes this module as gunicorn's config)."""

from __future__ import annotations

import gc


def post_worker_init(worker) -> None:
    """What loading the app made lives as long as the worker: move it out of the garbage
    collector's sight, so its full passes walk only what requests make (walking everything
    stalled every request of the process for 100 ms and more under load)."""
    gc.freeze()
