"""Work that kills its worker, or never ends, is given up: real worker subprocesses (prefork,
as in production) run tasks that die by SIGKILL, the way the out-of-memory killer ends them,
or run past their time limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.intake import Incoming, store_emails
from core.jobs import create_job
from core.models import Email, EmailStatus, Job, JobState
from tests.conftest import REPO_ROOT
from tests.integration import worker_tasks as tasks
from workers.app import celery_app


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def start_worker(argv: list[str], log_path, **settings) -> subprocess.Popen:
    """A worker command in its own process group, with ``SPAMSIFT_*`` settings added."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT),
           **{f"SPAMSIFT_{name}": str(value) for name, value in settings.items()}}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@pytest.fixture
def misbehaving_worker(engine, broker, tmp_path):
    """Start a prefork worker for the misbehaving test tasks, on their own queue, with the
    given settings; stopped after the test."""
    processes = []

    def start(**settings) -> None:
        processes.append(start_worker(
            ["-m", "celery", "-A", "tests.integration.worker_tasks:celery_app", "worker",
             "-Q", tasks.TEST_QUEUE, "--pool", "prefork", "--concurrency", "1",
             "--hostname", f"misbehaving-{uuid.uuid4().hex[:8]}@%h", "--without-mingle",
             "--without-gossip", "--loglevel", "INFO"],
            tmp_path / "worker.log", **settings))

    yield start
    for process in processes:
        stop_worker(process)
    broker.delete(tasks.TEST_QUEUE)


def store(*raws: bytes) -> list[int]:
    with session_scope() as session:
        return [s.email_id for s in store_emails(session, [Incoming(raw=raw, source="test")
                                                           for raw in raws])]


def make_job(total: int) -> int:
    with session_scope() as session:
        return create_job(session, "ingest", total=total).id


def email_status(email_id: int) -> tuple[EmailStatus, str | None]:
    with session_scope() as session:
        email = session.get(Email, email_id)
        return email.status, email.status_message


def runs(broker, name: str, email_ids: list[int]) -> int:
    return int(broker.get(tasks.runs_key(name, email_ids)) or 0)


def test_a_task_that_kills_its_worker_is_given_up_and_its_batch_split(
        committed, broker, misbehaving_worker):
    misbehaving_worker(MAX_TASK_DELIVERIES=2)
    poison, good = store(b"From: a@example.com\n" + tasks.POISON_HEADER + b"\n\nboom\n",
                         b"From: b@example.com\nSubject: fine\n\nhello\n")
    job_id = make_job(total=2)
    celery_app.send_task(tasks.PARSE_OR_DIE, [[poison, good]], {"job_id": job_id},
                         queue=tasks.TEST_QUEUE)

    wait_for(lambda: email_status(poison)[0] == EmailStatus.FAILED, timeout=90)
    status, message = email_status(poison)
    assert "spamsift.test.parse_or_die given up: the worker running it died 2 times" in message
    # The batch killed its worker twice, then was split; the poison email alone twice more.
    assert runs(broker, tasks.PARSE_OR_DIE, [poison, good]) == 2
    assert runs(broker, tasks.PARSE_OR_DIE, [poison]) == 2
    wait_for(lambda: email_status(good)[0] == EmailStatus.PARSED, timeout=30)
    assert runs(broker, tasks.PARSE_OR_DIE, [good]) == 1
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED and job.done == 2
        assert job.message.startswith(f"email {poison}: spamsift.test.parse_or_die given up")

    # Nothing is delivered again: no message waits in the queue or unacknowledged, and the
    # run counts stay put past the pool's 5-second check for dead processes.
    time.sleep(7)
    assert runs(broker, tasks.PARSE_OR_DIE, [poison]) == 2
    assert broker.llen(tasks.TEST_QUEUE) == 0 and broker.hlen("unacked") == 0


def test_a_task_past_its_time_limit_is_given_up(committed, broker, misbehaving_worker):
    misbehaving_worker(BULK_TIME_LIMIT=3)  # a soft limit of 2 s (tasks not routed run on bulk)
    [email_id] = store(b"From: c@example.com\nSubject: slow\n\nslow\n")
    job_id = make_job(total=1)
    started = time.monotonic()
    celery_app.send_task(tasks.SLEEP_OVER, [[email_id], 60], {"job_id": job_id},
                         queue=tasks.TEST_QUEUE)

    wait_for(lambda: email_status(email_id)[0] == EmailStatus.FAILED, timeout=30)
    assert time.monotonic() - started < 30
    assert email_status(email_id)[1] == ("spamsift.test.sleep_over given up: it ran past its "
                                         "2-second time limit")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED and "2-second time limit" in job.message
    assert runs(broker, tasks.SLEEP_OVER, [email_id]) == 1
