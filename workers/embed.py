"""Embed parsed emails: chunks → vectors → COPY into pgvector; then classify the batch."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.config import get_settings
from core.jobs import advance_job
from core.mail import text_for_model
from core.models import Email, EmailStatus
from core.vectors import emails_without_chunks, store_chunks
from workers.app import EMBED_EMAILS, DbTask
from workers.runtime import get_encoder


def embed(session: Session, emails: list[Email], pooling: str | None = None) -> int:
    """Chunk and embed emails that have no vectors from the encoder (with ``pooling``, by
    default the configured one); returns how many were embedded."""
    encoder = get_encoder()
    pooling = pooling or encoder.config.pooling
    name = encoder.name_for(pooling)
    missing = emails_without_chunks(session, name, [e.id for e in emails])
    todo = [e for e in emails if e.id in missing]
    if not todo:
        return 0
    max_chars = get_settings().model_text_chars
    owners, chunks = [], []
    for email in todo:
        for chunk in encoder.chunk(text_for_model(email.subject, email.text, max_chars)):
            owners.append(email.id)
            chunks.append(chunk)
    vectors = encoder.embed([chunk.text for chunk in chunks], pooling)
    store_chunks(session, name, [
        (owner, c.ordinal, c.text, c.char_start, c.char_end, vector)
        for owner, c, vector in zip(owners, chunks, vectors)])
    for email in todo:
        if email.status == EmailStatus.PARSED:
            email.status = EmailStatus.EMBEDDED
    return len(todo)


@shared_task(name=EMBED_EMAILS, base=DbTask, bind=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def embed_emails(self: DbTask, email_ids: list[int], job_id: int | None = None) -> int:
    """Embed a batch of parsed emails and classify them with the active model, if any."""
    from workers.classify import classify_batch

    emails = list(self.session.scalars(
        select(Email).where(Email.id.in_(email_ids), Email.status != EmailStatus.RECEIVED)
        .order_by(Email.id).with_for_update(skip_locked=True)))
    embedded = embed(self.session, emails)
    classify_batch(self.session, emails)
    if job_id is not None:
        advance_job(self.session, job_id, len(emails))
    return embedded
