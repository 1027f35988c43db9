"""The garbage collector settings of long-running processes (core.collector)."""

from __future__ import annotations

import gc

from core.collector import THRESHOLDS, settle_after_start


def test_settling_freezes_what_start_up_made_and_collects_less_often():
    before = gc.get_threshold()
    loaded = [object() for _ in range(10)]
    try:
        settle_after_start()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() >= len(loaded)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
