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


def test_bulk_verdicts_go_before_rescoring_and_indexing_sent_earlier(settings):
    """Index work queued first is still taken last: a bulk import's verdicts never wait
    behind search indexing (real Redis, a database of its own, the app's own settings)."""
    import redis
    from celery import Celery

    from tests.conftest import TEST_BROKER_URL
    from workers.names import INDEX_EMAILS, RESCORE, TASK_ROUTES

    url = TEST_BROKER_URL.rsplit("/", 1)[0] + "/14"
    settings(BROKER_URL=url)
    redis.Redis.from_url(url).flushdb()
    app = Celery("priority-test", set_as_current=False)
    app.conf.update(_celery_config())
    for name in (INDEX_EMAILS, RESCORE, CLASSIFY_EMAILS):
        route = TASK_ROUTES[name]
        app.send_task(name, args=[[1]], queue=route["queue"], priority=route.get("priority"))
    taken = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get("bulk")) is not None:
            taken.append(message.headers["task"])
            channel.basic_ack(message.delivery_tag)
    redis.Redis.from_url(url).flushdb()
    assert taken == [CLASSIFY_EMAILS, RESCORE, INDEX_EMAILS]


def test_every_scheduled_job_is_a_registered_routed_task(settings):
    """What beat sends, a worker knows: a task of that name, on a queue, with a setting."""
    from workers.app import celery_app
    from workers.names import TASK_ROUTES
    from workers.schedule import SCHEDULE, beat_schedule

    celery_app.loader.import_default_modules()
    for job in SCHEDULE:
        assert job.task in celery_app.tasks and job.task in TASK_ROUTES, job.name
        assert job.setting.startswith("SPAMSIFT_")
    every = {name: "60" for name in ("RETRAIN_CHECK_SECONDS", "REINDEX_EVERY_SECONDS",
                                     "DRIFT_CHECK_SECONDS", "REFIT_EVERY_SECONDS",
                                     "SELFTRAIN_EVERY_SECONDS", "ADAPT_MLM_EVERY_SECONDS",
                                     "PURGE_EVERY_SECONDS")}
    assert set(beat_schedule(settings(**every, RETENTION_DAYS=30))) == {
        job.name for job in SCHEDULE}
    assert "purge" not in beat_schedule(settings(**every, RETENTION_DAYS=0))
    off = beat_schedule(settings(**{name: "0" for name in every}, RETENTION_DAYS=30))
    assert set(off) == {"reconcile"}  # the one job that cannot be turned off
