"""The base of every task: work that keeps killing its worker, or runs past its time limit,
is given up instead of being run again and again.

With ``task_acks_late`` and ``task_reject_on_worker_lost``, a task whose worker process dies
(the kernel's out-of-memory killer, a crash) goes back to its queue and is delivered again
at once: one poison message would kill worker after worker forever. So each delivery is
counted in Redis under the task's id and retry number before the task runs, and the count is
dropped when the task returns or raises. A delivery past ``SPAMSIFT_MAX_TASK_DELIVERIES`` is
not run: its work is given up (``give_up``) and the message acknowledged. A task stopped by
its soft or hard time limit is given up the same way (the broker does not deliver it again).
"""

from __future__ import annotations

import inspect
import logging

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import Task
from sqlalchemy import create_engine, update
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from core import services
from core.config import get_settings
from core.db import session_scope, sqlalchemy_url
from core.jobs import advance_job, finish_job
from core.models import Email, EmailStatus, Job, JobState

log = logging.getLogger(__name__)

DELIVERIES_PREFIX = "spamsift:deliveries:"
DELIVERIES_TTL = 7 * 24 * 3600  # outlives any redelivery (the broker's visibility timeout)


class GuardedTask(Task):
    """Counts deliveries and gives up on poison; tasks run their body in ``call_in_context``.

    Work is found by argument name: ``email_ids`` or ``email_id`` for emails, ``job_id`` for
    the job that follows them."""

    def __call__(self, *args, **kwargs):
        request = self.request
        if request.called_directly or request.is_eager:
            return self.call_in_context(*args, **kwargs)
        key = f"{DELIVERIES_PREFIX}{request.id}:{request.retries}"
        limit = get_settings().max_task_deliveries
        try:
            if _count_delivery(key) > limit:
                give_up(self, request.id, args, kwargs,
                        f"the worker running it died {limit} times (out of memory, or killed)")
                return None
            return self.call_in_context(*args, **kwargs)
        finally:
            _forget_deliveries(key)

    def call_in_context(self, *args, **kwargs):
        """The task's body; a subclass wraps it in what the body needs."""
        return super().__call__(*args, **kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if isinstance(exc, SoftTimeLimitExceeded):
            give_up(self, task_id, args, kwargs,
                    f"it ran past its {self.soft_time_limit}-second time limit")
        elif isinstance(exc, TimeLimitExceeded):
            # Called in the pool's parent process, whose children are forked from it: it must
            # keep no pooled database connection.
            engine = create_engine(sqlalchemy_url(services.database_url()), poolclass=NullPool)
            try:
                give_up(self, task_id, args, kwargs,
                        f"it ran past its {self.time_limit}-second hard time limit", engine)
            finally:
                engine.dispose()


def _count_delivery(key: str) -> int:
    """This delivery's number; 0 when Redis cannot count (the task then runs as usual)."""
    try:
        pipe = services.redis_client().pipeline()
        pipe.incr(key)
        pipe.expire(key, DELIVERIES_TTL)
        return int(pipe.execute()[0])
    except Exception as exc:  # redis-py raises ConnectionError, TimeoutError and friends
        log.warning("cannot count deliveries of %s: %s", key, exc)
        return 0


def _forget_deliveries(key: str) -> None:
    try:
        services.redis_client().delete(key)
    except Exception as exc:
        log.warning("cannot forget deliveries of %s: %s", key, exc)


def give_up(task: Task, task_id: str, args: tuple, kwargs: dict, reason: str,
            engine: Engine | None = None) -> None:
    """Stop retrying a task's work. A batch of emails is split into one task per email, so
    one bad email fails alone; a single email is marked failed and its job, if any, too."""
    work = _arguments(task, args, kwargs)
    email_ids = list(work.get("email_ids") or [])
    if work.get("email_id") is not None:
        email_ids = [work["email_id"]]
    if len(email_ids) > 1:
        log.warning("%s[%s]: %s; its %d emails are tried one by one", task.name, task_id,
                    reason, len(email_ids))
        for email_id in email_ids:
            task.apply_async(kwargs={**work, "email_ids": [email_id]}, time_limit=None,
                             soft_time_limit=None)
        return
    log.error("%s[%s]: %s; given up", task.name, task_id, reason)
    message = f"{task.name} given up: {reason}"
    job_id = work.get("job_id")
    with session_scope(engine) as session:
        if email_ids:
            session.execute(update(Email)
                            .where(Email.id.in_(email_ids),
                                   Email.status != EmailStatus.CLASSIFIED)
                            .values(status=EmailStatus.FAILED, status_message=message))
        job = session.get(Job, job_id) if job_id is not None else None
        if job is not None:
            if email_ids:
                advance_job(session, job.id, len(email_ids))  # the rest may still finish
                session.refresh(job)
                message = f"email {email_ids[0]}: {message}"
            finish_job(session, job, JobState.FAILED, message=message)


def _arguments(task: Task, args: tuple, kwargs: dict) -> dict:
    try:
        return dict(inspect.signature(task.run).bind_partial(*args, **kwargs).arguments)
    except TypeError:
        return {}
