"""Scheduled upkeep on the real services: the reindex embeds only mail without vectors in
the configured space, followed by a job; the retention purge empties old raw messages and
keeps their text and verdicts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from core import vector_index
from core.db import get_engine, session_scope
from core.models import Chunk, Email, Job, JobState, ScheduledRun
from tests.integration.conftest import LABELED
from tests.rows import processed_emails
from tests.waiting import wait_for
from workers.client import index_space, send
from workers.names import PURGE_RAW, REINDEX


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

    # The job's last batch runs it again: nothing left, a run that says so, and no job.
    wait_for(lambda: scheduled_runs("reindex") == 2, timeout=60)
    with session_scope() as session:
        last = session.scalars(select(ScheduledRun).where(ScheduledRun.name == "reindex")
                               .order_by(ScheduledRun.id.desc())).first()
        assert last.message.startswith(f"every email has vectors in {space}")
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.kind == "reindex")) == 1


def test_after_an_encoder_change_the_old_space_is_retired_and_the_index_rebuilt(trained):
    space = index_space()
    wait_for(lambda: processed_emails(LABELED), timeout=120)
    with session_scope() as session:  # every vector made by an encoder no longer configured
        session.execute(update(Chunk).values(encoder="retired-encoder"))
        session.execute(update(Email).values(indexed_with="retired-encoder"))
        emails = session.scalar(select(func.count()).select_from(Email))
        filenode = index_filenode(session)
    send(REINDEX)
    job = wait_for(lambda: finished_job("reindex"), timeout=300)
    assert job.state == JobState.SUCCEEDED and job.total == emails
    wait_for(lambda: scheduled_runs("reindex") == 2, timeout=120)
    with session_scope() as session:
        last = session.scalars(select(ScheduledRun).where(ScheduledRun.name == "reindex")
                               .order_by(ScheduledRun.id.desc())).first()
        assert last.outcome == "ok" and "rebuilt ix_chunks_embedding_hnsw_384" in last.message
        assert set(session.scalars(select(func.distinct(Chunk.encoder)))) == {space}
        assert session.scalar(select(func.count(func.distinct(Chunk.email_id)))) == emails
        assert index_filenode(session) != filenode
        assert vector_index.invalid_indexes(session) == []


def test_the_active_models_space_stays_and_a_small_deletion_needs_no_rebuild(trained):
    space = index_space()
    wait_for(lambda: processed_emails(LABELED), timeout=120)
    with session_scope() as session:
        copy_chunks(session, space, "the-active-models-encoder", limit=None)
        copy_chunks(session, space, "retired-encoder", limit=3)
        filenode = index_filenode(session)
        summary = vector_index.maintain(session, keep={space, "the-active-models-encoder"})
        assert summary == "deleted 3 chunks of 384 dimensions"
        assert set(session.scalars(select(func.distinct(Chunk.encoder)))) == {
            space, "the-active-models-encoder"}
        assert index_filenode(session) == filenode


def test_the_leftover_of_an_interrupted_rebuild_is_dropped(trained):
    # A concurrent build that fails part-way leaves an invalid index behind, as an
    # interrupted REINDEX CONCURRENTLY leaves its "_ccnew" copy.
    with (get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")
          as connection, pytest.raises(IntegrityError)):
        connection.execute(text("CREATE UNIQUE INDEX CONCURRENTLY "
                                "ix_chunks_embedding_hnsw_384_ccnew ON chunks (dim)"))
    with session_scope() as session:
        assert vector_index.invalid_indexes(session) == ["ix_chunks_embedding_hnsw_384_ccnew"]
        vector_index.maintain(session, keep={index_space()})
        assert vector_index.invalid_indexes(session) == []
        assert session.scalar(text("SELECT count(*) FROM pg_class WHERE relname = "
                                   "'ix_chunks_embedding_hnsw_384_ccnew'")) == 0


def index_filenode(session) -> int:
    return session.scalar(text("SELECT pg_relation_filenode('ix_chunks_embedding_hnsw_384')"))


def copy_chunks(session, space: str, into: str, limit: int | None) -> None:
    session.execute(text(
        "INSERT INTO chunks (email_id, encoder, ordinal, text, char_start, char_end, dim, "
        "embedding) SELECT email_id, :into, ordinal, text, char_start, char_end, dim, embedding "
        "FROM chunks WHERE encoder = :space ORDER BY id LIMIT :limit"),
        {"into": into, "space": space, "limit": limit})
    session.commit()


def finished_job(kind: str) -> Job | None:
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.kind == kind))
        return job if job and job.state not in (JobState.QUEUED, JobState.RUNNING) else None


def scheduled_runs(name: str) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ScheduledRun).where(
            ScheduledRun.name == name, ScheduledRun.finished_at.is_not(None)))


def test_retention_purges_old_raw_messages_and_keeps_the_rest(trained, settings, client,
                                                              api_token):
    settings(RETENTION_DAYS=30)
    with session_scope() as session:
        ids = session.scalars(select(Email.id).order_by(Email.id)).all()
        old = ids[:10]
        session.execute(update(Email).where(Email.id.in_(old)).values(
            received_at=func.now() - timedelta(days=31)))
    send(PURGE_RAW)
    wait_for(lambda: scheduled_runs("purge") == 1, timeout=60)
    with session_scope() as session:
        run = session.scalar(select(ScheduledRun).where(ScheduledRun.name == "purge"))
        assert run.outcome == "ok" and "of 10 emails" in run.message
        purged = session.scalars(select(Email).where(Email.raw_purged_at.is_not(None))).all()
        assert sorted(e.id for e in purged) == sorted(old)
        assert all(e.raw == b"" and e.text and e.verdict_id for e in purged)
        assert all(len(e.raw) == e.size for e in session.scalars(
            select(Email).where(Email.id.not_in(old))))
    auth = {"Authorization": f"Bearer {api_token}"}
    gone = client.get(f"/api/emails/{old[0]}/raw", headers=auth)
    assert gone.status_code == 410 and "purged" in gone.get_json()["message"]
    assert client.get(f"/api/emails/{ids[-1]}/raw", headers=auth).status_code == 200
    assert client.get(f"/api/emails/{old[0]}", headers=auth).get_json()["email"]["text"]
