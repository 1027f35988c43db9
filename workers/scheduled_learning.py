"""Self-training and masked-LM adaptation as scheduled jobs (both off unless their interval
is set): each run queues the training-queue job unless one of its kind has not finished."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy import select

from core.config import get_settings
from core.models import Job, JobState
from workers.app import DbTask
from workers.client import queue_adaptation, queue_self_training
from workers.names import SCHEDULED_ADAPTATION, SCHEDULED_SELF_TRAINING
from workers.schedule import run_scheduled


def _queue_unless_pending(session, kind: str, queue) -> tuple[str, int | None]:
    pending = session.scalar(select(Job.id).where(
        Job.kind == kind, Job.state.in_((JobState.QUEUED, JobState.RUNNING))))
    if pending is not None:
        return f"{kind} job {pending} has not finished yet", None
    job = queue(session)
    session.commit()
    return f"queued {kind} job {job.id}", job.id


@shared_task(name=SCHEDULED_SELF_TRAINING, base=DbTask, bind=True)
def scheduled_self_training(self: DbTask, from_beat: bool = False) -> int | None:
    return run_scheduled("selftrain", lambda: _queue_unless_pending(
        self.session, "selftrain", queue_self_training), get_settings(), from_beat)


@shared_task(name=SCHEDULED_ADAPTATION, base=DbTask, bind=True)
def scheduled_adaptation(self: DbTask, from_beat: bool = False) -> int | None:
    return run_scheduled("adapt-mlm", lambda: _queue_unless_pending(
        self.session, "adapt", queue_adaptation), get_settings(), from_beat)
