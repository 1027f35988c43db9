"""Waiting in tests for something other processes do (workers, the reconciler)."""

from __future__ import annotations

import time
from pathlib import Path


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1,
             log_path: Path | None = None):
    """``predicate()``'s first true value, tried every ``interval`` s; fails after ``timeout``
    seconds, showing the end of ``log_path`` (a worker's log) when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    log = log_path.read_text(errors="replace")[-4000:] if log_path else ""
    raise AssertionError("condition not met in time" + (f"; the worker's log:\n{log}"
                                                        if log else ""))
