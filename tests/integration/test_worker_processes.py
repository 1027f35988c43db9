"""Worker processes as they run in production (prefork subprocesses): work that kills its
worker or never ends is given up, and realtime work never waits behind bulk work.

The misbehaving work is test tasks (``worker_tasks``): dying by SIGKILL the way the
out-of-memory killer ends a process, sleeping past a time limit, holding a bulk worker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest
from celery.signals import before_task_publish

from core.db import session_scope
from core.intake import Incoming, store_emails
from core.jobs import create_job
from core.models import Email, EmailStatus, Job, JobState
from tests.integration import worker_tasks as tasks
from tests.processes import group_alive, start_command, stop_command
from tests.waiting import wait_for
from workers.app import celery_app
from workers.names import BULK, CLASSIFY_EMAIL, REALTIME
from workers.client import send as workers_send


def send(name: str, args: list, kwargs: dict | None = None, *, queue: str) -> None:
    """Enqueue a test task the way ``workers.app.send`` enqueues: without time limits in the
    message, so the worker applies its own."""
    celery_app.send_task(name, args, kwargs, queue=queue, time_limit=None,
                         soft_time_limit=None)


@pytest.fixture
def misbehaving_worker(engine, broker, tmp_path):
    """Start a prefork worker for the misbehaving test tasks, on their own queue, with the
    given settings, and wait until it answers; returns its log. Stopped after the test."""
    processes = []

    def start(**settings):
        hostname = f"misbehaving-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        log_path = tmp_path / "worker.log"
        processes.append(start_command(
            ["-m", "celery", "-A", "tests.integration.worker_tasks:celery_app", "worker",
             "-Q", tasks.TEST_QUEUE, "--pool", "prefork", "--concurrency", "1",
             "--hostname", hostname, "--without-mingle", "--without-gossip",
             "--loglevel", "INFO"],
            log_path, **settings))
        wait_for(lambda: celery_app.control.ping(destination=[hostname], timeout=0.5), 60,
                 log_path=log_path)
        return log_path

    yield start
    for process in processes:
        stop_command(process)
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
    log = misbehaving_worker(MAX_TASK_DELIVERIES=2)
    poison, good = store(b"From: a@example.com\n" + tasks.POISON_HEADER + b"\n\nboom\n",
                         b"From: b@example.com\nSubject: fine\n\nhello\n")
    job_id = make_job(total=2)
    send(tasks.PARSE_OR_DIE, [[poison, good]], {"job_id": job_id}, queue=tasks.TEST_QUEUE)

    wait_for(lambda: email_status(poison)[0] == EmailStatus.FAILED, 90, log_path=log)
    status, message = email_status(poison)
    assert "spamsift.test.parse_or_die given up: the worker running it died 2 times" in message
    # The batch killed its worker twice, then was split; the poison email alone twice more.
    assert runs(broker, tasks.PARSE_OR_DIE, [poison, good]) == 2
    assert runs(broker, tasks.PARSE_OR_DIE, [poison]) == 2
    wait_for(lambda: email_status(good)[0] == EmailStatus.PARSED, 30, log_path=log)
    assert runs(broker, tasks.PARSE_OR_DIE, [good]) == 1
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED and job.done == 2
        assert job.message.startswith(f"email {poison}: spamsift.test.parse_or_die given up")

    # Nothing is delivered again: no message waits in the queue or unacknowledged, and the
    # run counts stay put past the pool's 5-second check for dead processes.
    time.sleep(7)
    assert runs(broker, tasks.PARSE_OR_DIE, [poison]) == 2
    assert broker.llen(tasks.TEST_QUEUE) == 0
    assert not [m for m in broker.hvals("unacked") if tasks.PARSE_OR_DIE.encode() in m]


def test_a_task_past_its_time_limit_is_given_up(committed, broker, misbehaving_worker):
    log = misbehaving_worker(BULK_TIME_LIMIT=3)  # soft limit 2 s (tasks not routed: bulk's)
    [email_id] = store(b"From: c@example.com\nSubject: slow\n\nslow\n")
    job_id = make_job(total=1)
    started = time.monotonic()
    send(tasks.SLEEP_OVER, [[email_id], 60], {"job_id": job_id}, queue=tasks.TEST_QUEUE)

    wait_for(lambda: email_status(email_id)[0] == EmailStatus.FAILED, 30, log_path=log)
    assert time.monotonic() - started < 30
    assert email_status(email_id)[1] == ("spamsift.test.sleep_over given up: it ran past its "
                                         "2-second time limit")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED and "2-second time limit" in job.message
    assert runs(broker, tasks.SLEEP_OVER, [email_id]) == 1


def test_a_task_past_its_hard_time_limit_is_given_up(committed, broker, misbehaving_worker):
    """The pool's parent process kills it and records why, keeping no database connection
    that the next forked worker process would share."""
    log = misbehaving_worker(BULK_TIME_LIMIT=3)
    stuck, good = store(b"From: d@example.com\nSubject: stuck\n\nstuck\n",
                        b"From: e@example.com\nSubject: after\n\nafter\n")
    send(tasks.OUTLAST_SOFT_LIMIT, [[stuck], 60], queue=tasks.TEST_QUEUE)

    wait_for(lambda: email_status(stuck)[0] == EmailStatus.FAILED, 30, log_path=log)
    assert email_status(stuck)[1] == ("spamsift.test.outlast_soft_limit given up: it ran "
                                      "past its 3-second hard time limit")
    send(tasks.PARSE_OR_DIE, [[good]], queue=tasks.TEST_QUEUE)
    wait_for(lambda: email_status(good)[0] == EmailStatus.PARSED, 30, log_path=log)


def test_enqueued_tasks_leave_their_time_limits_to_the_worker(committed, broker):
    """Celery stamps a task's time limits into its message wherever the task is registered
    (in every worker): the limits a worker is configured with must be the ones it applies."""
    celery_app.loader.import_default_modules()
    celery_app.finalize()  # as in a worker: the tasks registered, with their time limits
    stamped = []

    def capture(sender=None, headers=None, **_):
        stamped.append((sender, tuple(headers["timelimit"])))

    before_task_publish.connect(capture)
    try:
        workers_send(CLASSIFY_EMAIL, [0])
    finally:
        before_task_publish.disconnect(capture)
    assert stamped == [(CLASSIFY_EMAIL, (None, None))]


def consumers_of(queue: str, other_than: str) -> list[str]:
    active = celery_app.control.inspect(timeout=1).active_queues() or {}
    return [host for host, queues in active.items()
            if host != other_than and queue in {q["name"] for q in queues}]


def test_a_plain_spamsift_worker_keeps_realtime_free_while_bulk_is_busy(
        committed, broker, session_worker_paused, tmp_path):
    """`spamsift worker` with no options, as an operator starts it: bulk work fills every
    bulk slot it has, and a realtime task still runs at once."""
    site = tmp_path / "site"  # every Python process started below loads the test tasks
    site.mkdir()
    (site / "sitecustomize.py").write_text("import tests.integration.worker_tasks\n")
    release, done = f"spamsift-test:release:{uuid.uuid4().hex}", "spamsift-test:realtime-done"
    broker.delete(done)
    log = tmp_path / "worker.log"
    process = start_command(["-m", "cli", "worker"], log, pythonpath=(site,))
    try:
        for _ in range(4 * (os.cpu_count() or 1)):  # more than any pool has processes
            send(tasks.WAIT_FOR_RELEASE, [release, 120], queue=BULK)

        def bulk_slots_full() -> bool:
            started = broker.get(release + ":started")
            time.sleep(2)
            return bool(started) and broker.get(release + ":started") == started \
                and broker.llen(BULK) > 0
        wait_for(bulk_slots_full, 90, log_path=log)
        wait_for(lambda: consumers_of(REALTIME, other_than=session_worker_paused), 60,
                 log_path=log)

        sent = time.time()
        send(tasks.MARK_DONE, [done], queue=REALTIME)
        wait_for(lambda: broker.exists(done), 20, log_path=log)
        assert float(broker.get(done)) - sent < 10
    finally:
        broker.set(release, 1)
        process.send_signal(15)  # the command itself stops every worker it started
        try:
            wait_for(lambda: process.poll() is not None and not group_alive(process), 60)
        finally:
            stop_command(process)
            celery_app.control.purge()


def test_worker_refuses_to_put_realtime_in_one_pool_with_bulk(committed, tmp_path):
    process = start_command(["-m", "cli", "worker", "-Q", "bulk,realtime"], tmp_path / "out")
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("a worker started with realtime and bulk in one pool")
    finally:
        stop_command(process)
    output = (tmp_path / "out").read_text()
    assert process.returncode == 2
    assert "realtime would share a pool with bulk" in output and "--share-realtime" in output


def test_a_worker_whose_celery_process_dies_is_started_again(
        committed, broker, session_worker_paused, tmp_path):
    """`spamsift worker -Q bulk`: its Celery process dies all at once (as on the crash in
    kombu while Redis was down, or the out-of-memory killer); the command starts it again
    and the queue's work goes on."""
    import psutil

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import tests.integration.worker_tasks\n")
    done = f"spamsift-test:done:{uuid.uuid4().hex}"
    log = tmp_path / "worker.log"
    process = start_command(["-m", "cli", "worker", "-Q", BULK, "-c", "1"], log,
                            pythonpath=(site,))
    try:
        wait_for(lambda: consumers_of(BULK, other_than=session_worker_paused), 90, log_path=log)
        (celery_process,) = psutil.Process(process.pid).children()
        for dying in [celery_process, *celery_process.children(recursive=True)]:
            dying.kill()
        wait_for(lambda: [c.pid for c in psutil.Process(process.pid).children()
                          if c.pid != celery_process.pid], 30, log_path=log)
        send(tasks.MARK_DONE, [done], queue=BULK)
        wait_for(lambda: broker.exists(done), 90, log_path=log)
        assert process.poll() is None
        assert "exited with -9; starting it again" in log.read_text()
    finally:
        stop_command(process)
        broker.delete(done)
