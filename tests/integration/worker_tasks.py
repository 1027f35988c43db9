"""Tasks that misbehave the way real work can, run by the worker subprocesses the tests start
(``celery -A tests.integration.worker_tasks:celery_app worker``, or any worker command with
this module imported). The suite's in-process worker never runs them: they go to a queue of
their own, or to the real queues only while that worker is paused.

Each task counts its runs in Redis under ``runs_key(name, email_ids)`` so a test can tell how
often the broker delivered it.
"""

from __future__ import annotations

import os
import signal
import time

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from core import services
from core.jobs import advance_job
from core.models import Email
from workers.app import DbTask, celery_app
from workers.pipeline import parse as apply_parse

TEST_QUEUE = "spamsift-test-misbehaving"
PARSE_OR_DIE = "spamsift.test.parse_or_die"
SLEEP_OVER = "spamsift.test.sleep_over"
OUTLAST_SOFT_LIMIT = "spamsift.test.outlast_soft_limit"
WAIT_FOR_RELEASE = "spamsift.test.wait_for_release"
MARK_DONE = "spamsift.test.mark_done"
POISON_HEADER = b"X-Test-Poison: kill-the-worker"


def runs_key(name: str, email_ids: list[int]) -> str:
    return f"spamsift-test:runs:{name}:{','.join(map(str, email_ids))}"


def _count_run(name: str, email_ids: list[int]) -> None:
    services.redis_client().incr(runs_key(name, email_ids))


@celery_app.task(name=PARSE_OR_DIE, base=DbTask, bind=True, queue=TEST_QUEUE)
def parse_or_die(self: DbTask, email_ids: list[int], job_id: int | None = None) -> int:
    """Parse emails, but die like an out-of-memory kill (SIGKILL) when one is poison."""
    _count_run(PARSE_OR_DIE, email_ids)
    emails = self.session.scalars(select(Email).where(Email.id.in_(email_ids))).all()
    if any(POISON_HEADER in email.raw for email in emails):
        os.kill(os.getpid(), signal.SIGKILL)
    for email in emails:
        apply_parse(email)
    if job_id is not None:
        advance_job(self.session, job_id, len(emails))
    return len(emails)


@celery_app.task(name=SLEEP_OVER, base=DbTask, bind=True, queue=TEST_QUEUE)
def sleep_over(self: DbTask, email_ids: list[int], seconds: float,
               job_id: int | None = None) -> None:
    """Work that takes far longer than it should (a pathological message, a hung call)."""
    _count_run(SLEEP_OVER, email_ids)
    time.sleep(seconds)


@celery_app.task(name=OUTLAST_SOFT_LIMIT, base=DbTask, bind=True, queue=TEST_QUEUE)
def outlast_soft_limit(self: DbTask, email_ids: list[int], seconds: float,
                       job_id: int | None = None) -> None:
    """Work the soft time limit cannot stop (stuck in C code, or swallowing the exception)."""
    _count_run(OUTLAST_SOFT_LIMIT, email_ids)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(max(0.0, deadline - time.monotonic()))
        except SoftTimeLimitExceeded:
            pass


@celery_app.task(name=WAIT_FOR_RELEASE)
def wait_for_release(key: str, seconds: float) -> None:
    """Slow bulk work that uses no CPU: holds its worker until ``key`` is set in Redis."""
    client = services.redis_client()
    client.incr(key + ":started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not client.exists(key):
        time.sleep(0.1)


@celery_app.task(name=MARK_DONE)
def mark_done(key: str) -> None:
    """Quick realtime work: records when it ran."""
    services.redis_client().set(key, time.time())
