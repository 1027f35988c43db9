"""The scheduled reindex on the real services: only mail without vectors in the configured
space is embedded, followed by a job; mail that has them is left alone."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from core.db import session_scope
from core.models import Chunk, Email, Job, JobState, ScheduledRun
from tests.integration.conftest import LABELED
from tests.rows import processed_emails
from tests.waiting import wait_for
from workers.client import index_space, send
from workers.names import REINDEX


def test_the_reindex_job_embeds_only_what_lacks_vectors(trained):
    space = index_space()
    with session_scope() as session:
        ids = session.scalars(select(Email.id).order_by(Email.id)).all()
        lacking = ids[:5]
        session.execute(delete(Chunk).where(Chunk.email_id.in_(lacking)))
        session.execute(update(Email).where(Email.id.in_(lacking)).values(indexed_with=None))
        kept = dict(session.execute(select(Chunk.id, Chunk.email_id)
                                    .where(Chunk.email_id.not_in(lacking))).all())
    send(REINDEX)
    job = wait_for(lambda: finished_job("reindex"), timeout=120)
    assert job.state == JobState.SUCCEEDED and job.total == 5 and job.done == 5
    assert job.params == {"space": space}
    wait_for(lambda: processed_emails(LABELED), timeout=60)
    with session_scope() as session:
        assert dict(session.execute(select(Chunk.id, Chunk.email_id)
                                    .where(Chunk.email_id.not_in(lacking))).all()) == kept
        assert session.scalar(select(func.count(func.distinct(Chunk.email_id)))
                              .where(Chunk.email_id.in_(lacking), Chunk.encoder == space)) == 5
        run = session.scalar(select(ScheduledRun).where(ScheduledRun.name == "reindex"))
        assert run.outcome == "ok" and run.message.startswith("sent 5 emails")

    send(REINDEX)  # nothing left: a run that says so, and no job
    wait_for(lambda: scheduled_runs("reindex") == 2, timeout=60)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.kind == "reindex")) == 1


def finished_job(kind: str) -> Job | None:
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.kind == kind))
        return job if job and job.state not in (JobState.QUEUED, JobState.RUNNING) else None


def scheduled_runs(name: str) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ScheduledRun).where(
            ScheduledRun.name == name, ScheduledRun.finished_at.is_not(None)))
