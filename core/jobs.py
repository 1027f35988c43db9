"""Job rows: progress of long-running work that the CLI and dashboard follow.

Start and finish times use ``clock_timestamp()``: ``now()`` is the start of the transaction,
which for a long training run is minutes before it finished."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import case, func, update
from sqlalchemy.orm import Session

from core.config import get_settings
from core.db import after_commit
from core.metrics import count
from core.models import Job, JobState


def uploads_dir() -> Path:
    """Where dashboard uploads wait for their import job; a job's ``params["upload"]`` is
    its file's path relative to this."""
    return get_settings().var_dir / "uploads"


def create_job(session: Session, kind: str, total: int | None = None, params: dict | None = None,
               state: JobState = JobState.RUNNING) -> Job:
    job = Job(kind=kind, total=total, params=params or {}, state=state,
              started_at=func.clock_timestamp() if state == JobState.RUNNING else None)
    session.add(job)
    session.flush()
    return job


def start_job(session: Session, job: Job, total: int | None = None) -> None:
    job.state = JobState.RUNNING
    job.started_at = func.clock_timestamp()
    if total is not None:
        job.total = total


def advance_job(session: Session, job_id: int, done: int) -> bool:
    """Add ``done`` units of progress; the job succeeds when it reaches its total, unless
    part of it failed. Returns whether this call made it reach its total."""
    reached = (Job.total.is_not(None)) & (Job.done + done >= Job.total)
    succeeded = reached & (Job.state != JobState.FAILED)
    row = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            done=Job.done + done,
            state=case((succeeded, JobState.SUCCEEDED), else_=Job.state),
            finished_at=case((reached, func.clock_timestamp()), else_=Job.finished_at),
        )
        .returning(Job.done, Job.total, Job.kind, Job.state)
    ).first()
    reached_now = (row is not None and row.total is not None
                   and row.done - done < row.total <= row.done)
    if reached_now:
        _count_after_commit(session, row.kind, row.state)
    return reached_now


def finish_job(session: Session, job: Job, state: JobState, message: str | None = None,
               result: dict | None = None) -> None:
    job.state = state
    job.message = message
    job.result = result or job.result
    job.finished_at = func.clock_timestamp()
    if state not in (JobState.QUEUED, JobState.RUNNING):
        _count_after_commit(session, job.kind, state)


def _count_after_commit(session: Session, kind: str, state: JobState) -> None:
    after_commit(session, lambda: count(lambda m: m.jobs.labels(kind, JobState(state).value).inc()))
