"""Faults a deployment lives through, on real processes: the broker stops during a burst of
webhooks, the database stops, a bulk worker is killed with SIGKILL in the middle of a batch.
Each ends with every accepted email classified exactly once.

Everything runs as an operator runs it (``spamsift web``, ``spamsift worker``, ``spamsift
beat``, ``spamsift import``, ``spamsift train``) over a Redis, and where it is stopped a
PostgreSQL, of the test's own (tests/private_services.py); mail goes in over HTTP and the
results are read as rows. The machine's servers are never stopped.
"""

from __future__ import annotations

import time

import pytest
import requests

from core.models import EmailStatus
from tests.conftest import TEST_DATABASE_URL
from tests.messages import generated_message, write_generated_mail
from tests.rows import status_counts
from tests.stack import Burst, deployment, post_raw, webhook_post
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

REDIS_DOWN_SECONDS = 8
# Webhook senders wait only so long for an answer; the enqueue's own retries take about 1 s.
ANSWER_WITHIN_SECONDS = 5

# The whole pipeline in one worker: webhook verdicts, the reconciler's re-sends, training.
ALL_QUEUES = ("worker", "-Q", "realtime,bulk,training", "--share-realtime", "-c", "2")


def test_redis_stopped_during_a_burst_of_webhooks_then_started_loses_no_email(
        committed, private_redis, tmp_path):
    """While the broker is down webhooks still accept (the email is stored, the failed
    enqueue logged); what was queued dies with it. Once it is back, the reconciler sends
    on what did not move: every email answered 2xx ends classified exactly once."""
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, private_redis.url(),
                    RECONCILE_AFTER_SECONDS=2) as stack:
        stack.start("worker", *ALL_QUEUES)
        stack.start("beat", "beat")
        labeled = stack.train_model()
        token = stack.api_token()
        with stack.web("-w", "2") as web:
            burst = Burst(web.url, token, generated_message, clients=4)
            wait_for(lambda: burst.answered_since(0) >= 20, 60)
            private_redis.stop()
            stopped = time.monotonic()
            time.sleep(REDIS_DOWN_SECONDS)
            private_redis.start()
            restarted = time.monotonic()
            wait_for(lambda: burst.answered_since(restarted) >= 20, 90)
            posted = burst.stop()
        assert {p.code for p in posted} == {202}, [p for p in posted if p.code != 202][:5]
        waits = sorted(p.ended - p.started for p in posted)
        assert waits[-1] <= ANSWER_WITHIN_SECONDS, (
            f"{sum(w > ANSWER_WITHIN_SECONDS for w in waits)} of {len(posted)} posts answered "
            f"after more than {ANSWER_WITHIN_SECONDS} s, the slowest after {waits[-1]:.1f} s "
            f"(Redis was down for {restarted - stopped:.1f} s)")
        while_down = [p for p in posted if stopped <= p.started and p.ended <= restarted]
        assert len(while_down) >= 8
        assert "not enqueued" in web.output  # the failed enqueue is logged
        assert len({p.email_id for p in posted}) == len(posted)

        stack.wait_until_each_classified_once(120, expected=labeled + len(posted))


def test_postgres_stopped_webhooks_answer_503_health_says_so_and_mail_flows_after(
        private_postgres, private_redis, tmp_path):
    """Without the database nothing can be stored, so webhooks answer 503 with Retry-After
    (every provider retries it) and the health report says the database is down; once it is
    back the retried and the new mail are accepted and classified."""
    with deployment(tmp_path / "stack", private_postgres.url("spamsift"), private_redis.url(),
                    RECONCILE_AFTER_SECONDS=2) as stack:
        stack.start("worker", *ALL_QUEUES)
        stack.start("beat", "beat")
        labeled = stack.train_model()
        token = stack.api_token()
        with stack.web("-w", "2") as web:
            before = [post_raw(web.url, token, generated_message(n), n) for n in range(5)]
            assert [p.code for p in before] == [202] * 5
            stack.wait_until_each_classified_once(60, expected=labeled + 5)

            private_postgres.stop()
            for n in range(5, 10):
                response = webhook_post(web.url, token, generated_message(n))
                assert response.status_code == 503, response.text
                assert int(response.headers["Retry-After"]) > 0
                assert "database unavailable" in response.json()["error"]

            def health() -> dict:
                response = requests.get(f"{web.url}/healthz/details", timeout=30)
                return {"code": response.status_code, **response.json()}

            down = wait_for(lambda: (report := health())["database"]["ok"] is False and report,
                            30)
            assert down["code"] == 503 and down["status"] == "down", down
            assert down["broker"] == {"ok": True}, down

            private_postgres.start()
            wait_for(lambda: health()["database"] == {"ok": True}, 30)
            # The provider's retries of the refused messages, and new mail.
            after = [post_raw(web.url, token, generated_message(n), n) for n in range(5, 15)]
            assert [p.code for p in after] == [202] * 10
        stack.wait_until_each_classified_once(90, expected=labeled + 15)


def test_kill_9_of_a_bulk_worker_mid_batch_then_a_restart_classifies_every_email_once(
        committed, private_redis, tmp_path):
    """The whole process group of a bulk worker killed while it works through an import (no
    task acknowledged, rolled back or re-queued by it); started again, with beat running the
    reconciler: every email ends classified once by the active model, none failed."""
    batch = 1000  # the verdict path is fast: enough mail that the kill lands inside the run
    # Small batches, so the kill lands inside one while others wait on the queue; the
    # reconciler, once beat runs, re-sends what has not moved for 2 s.
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, private_redis.url(),
                    ENQUEUE_BATCH_SIZE=20, RECONCILE_AFTER_SECONDS=2) as stack:
        bulk_worker = ("worker", "-Q", "bulk,training", "-c", "2")
        stack.start("bulk-worker", *bulk_worker)
        labeled = stack.train_model()
        write_generated_mail(tmp_path / "batch", batch)
        # In the background: on a busy machine the workers can finish the batch before the
        # import command itself has exited.
        stack.start("import", "import", str(tmp_path / "batch"))

        def classified_from_batch() -> int:
            return status_counts(stack.engine)[EmailStatus.CLASSIFIED] - labeled

        wait_for(lambda: classified_from_batch() >= 20, 120, interval=0.02,
                 log_path=stack.log("bulk-worker"))
        stack.kill("bulk-worker")
        at_kill = status_counts(stack.engine)
        assert 0 < at_kill[EmailStatus.CLASSIFIED] - labeled < batch, at_kill

        stack.start("bulk-worker", *bulk_worker)
        stack.start("beat", "beat")
        stack.wait_until_each_classified_once(120, expected=labeled + batch)
