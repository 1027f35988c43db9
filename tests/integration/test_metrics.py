"""Prometheus metrics from real processes: gunicorn serves /metrics adding up what every
process of the host wrote (its own workers and the Celery worker's pool), so a webhook
delivery and the verdict a worker made show up in one scrape."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_BROKER_URL, TEST_DATABASE_URL
from tests.messages import generated_message
from tests.stack import deployment, post_raw
from tests.waiting import wait_for
from web import create_app


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) → value."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scraped: dict[tuple, float], name: str, **labels: str) -> float:
    """The sum over the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (sample, have), v in scraped.items()
               if sample == name and set(labels.items()) <= set(have))


def test_a_scrape_after_a_webhook_and_a_verdict_finds_the_counters_moved(
        committed, broker, session_worker_paused, tmp_path):
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, TEST_BROKER_URL) as stack:
        stack.start("worker", "worker", "-Q", "realtime,bulk,training", "--share-realtime",
                    "-c", "1")
        stack.train_model()
        token = stack.api_token()
        with stack.web("-w", "2") as web:
            before = samples(requests.get(f"{web.url}/metrics", timeout=30).text)
            posted = post_raw(web.url, token, generated_message(1001))
            assert posted.code == 202
            stack.wait_until_each_classified_once(60)

            def moved() -> dict | None:
                now = samples(requests.get(f"{web.url}/metrics", timeout=30).text)
                verdicts = value(now, "spamsift_verdicts_total")
                return now if verdicts > value(before, "spamsift_verdicts_total") else None

            after = wait_for(moved, 30)
        delivered = ("spamsift_webhook_deliveries_total", {"provider": "raw",
                                                           "outcome": "accepted"})
        assert value(after, delivered[0], **delivered[1]) == \
            value(before, delivered[0], **delivered[1]) + 1
        assert value(after, "spamsift_http_requests_total", route="/webhooks/raw",
                     status="202") >= 1
        assert value(after, "spamsift_classification_seconds_count") > \
            value(before, "spamsift_classification_seconds_count")
        assert value(after, "spamsift_tasks_total", task="spamsift.classify_email",
                     outcome="succeeded") >= 1
        assert value(after, "spamsift_jobs_total", kind="train", state="succeeded") >= 1
        assert {dict(labels)["queue"] for (name, labels) in after
                if name == "spamsift_queue_messages"} == {"realtime", "bulk", "training"}
        assert value(after, "spamsift_active_model") == 1


def test_metrics_need_a_read_token_off_this_machine(tokens):
    client = create_app().test_client()
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote).status_code == 401
    ingest = {"Authorization": f"Bearer {tokens['ingest']}"}
    assert client.get("/metrics", environ_base=remote, headers=ingest).status_code == 403
    read = client.get("/metrics", environ_base=remote,
                      headers={"Authorization": f"Bearer {tokens['read']}"})
    assert read.status_code == 200 and b"spamsift_queue_messages" in read.data
