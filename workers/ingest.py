"""Turn stored raw messages into parsed emails."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from core.mail import parse_email
from core.models import Email, EmailStatus
from workers.app import EMBED_EMAILS, PARSE_EMAILS, DbTask, send_after_commit


def apply_parse(email: Email) -> None:
    """Fill an email's parsed fields from its raw bytes (idempotent)."""
    parsed = parse_email(email.raw)
    email.message_id = email.message_id or parsed.message_id
    email.subject = parsed.subject
    email.sender = parsed.sender
    email.recipients = parsed.recipients
    email.sent_at = parsed.sent_at
    email.headers = parsed.headers
    email.text = parsed.text
    email.attachments = parsed.attachments
    email.defects = parsed.defects
    if email.status in (EmailStatus.RECEIVED, EmailStatus.FAILED):
        email.status = EmailStatus.PARSED
        email.status_message = None


@shared_task(name=PARSE_EMAILS, base=DbTask, bind=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def parse_emails(self: DbTask, email_ids: list[int], job_id: int | None = None) -> int:
    """Parse a batch of emails; rows another worker holds are left to it."""
    emails = self.session.scalars(
        select(Email).where(Email.id.in_(email_ids)).with_for_update(skip_locked=True)
    ).all()
    for email in emails:
        apply_parse(email)
    # Progress is counted when the last step (embedding) is done.
    send_after_commit(self.session, EMBED_EMAILS, [[e.id for e in emails]], {"job_id": job_id})
    return len(emails)
