"""Time limits per queue, and a broker that never redelivers a task still within them."""

from __future__ import annotations

from types import SimpleNamespace

from workers.app import _celery_config
from workers.names import CLASSIFY_EMAIL, CLASSIFY_EMAILS, TRAIN_MODEL


def test_each_queue_has_its_time_limits_and_redelivery_waits_for_the_longest(settings):
    settings(REALTIME_TIME_LIMIT=30, BULK_TIME_LIMIT=600, TRAINING_TIME_LIMIT=10 * 3600)
    config = _celery_config()
    limits = {name: config["task_annotations"].annotate(SimpleNamespace(name=name))
              for name in (CLASSIFY_EMAIL, CLASSIFY_EMAILS, TRAIN_MODEL, "not.routed")}
    assert limits == {
        CLASSIFY_EMAIL: {"time_limit": 30, "soft_time_limit": 27},
        CLASSIFY_EMAILS: {"time_limit": 600, "soft_time_limit": 540},
        TRAIN_MODEL: {"time_limit": 36000, "soft_time_limit": 35940},
        "not.routed": {"time_limit": 600, "soft_time_limit": 540},  # the default queue: bulk
    }
    # acks_late: an unacknowledged task is delivered again after the visibility timeout, so
    # it must outlast the longest task.
    assert config["broker_transport_options"]["visibility_timeout"] > 10 * 3600
