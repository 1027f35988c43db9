"""A bounded load test on loopback: 2,000 distinct raw webhook posts at concurrency 20
through gunicorn (``spamsift web``) with real workers (a plain ``spamsift worker``) end with
exactly 2,000 emails stored and each classified exactly once.

Not part of ``make test`` (it takes minutes on two cores): run it with ``make test-load``.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.conftest import TEST_DATABASE_URL
from tests.messages import generated_message
from tests.stack import deployment, post_all

POSTS = 2_000
CONCURRENCY = 20


@pytest.mark.timeout(1800)  # minutes on two cores, past the suite's 600 s per test
def test_2000_raw_webhook_posts_at_concurrency_20_are_stored_and_classified_once(
        committed, private_redis, tmp_path):
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, private_redis.url()) as stack:
        stack.start("workers", "worker")  # as an operator starts it: a worker per queue
        labeled = stack.train_model()
        token = stack.api_token()
        with stack.web() as web:
            started = time.monotonic()
            posted = post_all(web.url, token, ((n, generated_message(n)) for n in range(POSTS)),
                              CONCURRENCY)
            posting = time.monotonic() - started
        assert Counter(p.code for p in posted) == {202: POSTS}
        assert len({p.email_id for p in posted}) == POSTS  # each stored, none a duplicate
        stack.wait_until_each_classified_once(900, expected=labeled + POSTS)
        finished = time.monotonic() - started
        waits = sorted(p.ended - p.started for p in posted)
        print(f"\n{POSTS} posts at concurrency {CONCURRENCY}: accepted in {posting:.1f} s "
              f"({POSTS / posting:.0f}/s, p50 {waits[len(waits) // 2] * 1000:.0f} ms, "
              f"p99 {waits[int(len(waits) * 0.99)] * 1000:.0f} ms); every one classified "
              f"once {finished:.1f} s after the first post ({POSTS / finished:.1f} emails/s)")
