"""Search indexing on real services: it comes after the verdict and never holds a bulk worker
while verdict work waits (real Redis, the real encoder, PostgreSQL + pgvector)."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import session_scope
from core.intake import Incoming, store_emails
from core.models import Email
from tests.messages import as_eml
from workers.app import celery_app
from workers.client import send
from workers.names import BULK, CLASSIFY_EMAILS, INDEX_EMAILS
from workers.pipeline import judge
from workers.tasks import INDEX_STEP, index_emails


def parsed_mail(count: int) -> list[int]:
    """``count`` distinct emails, stored and parsed (no model is active: no verdict)."""
    with session_scope() as session:
        stored = store_emails(session, [
            Incoming(as_eml(f"Meeting notes {n}", f"Minutes of meeting {n}: budget, hiring and "
                                                  "the roadmap for the next quarter."), "test")
            for n in range(count)])
        ids = [s.email_id for s in stored]
        judge(session, list(session.scalars(select(Email).where(Email.id.in_(ids)))))
    return ids


def indexed_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Email)
                              .where(Email.indexed_with.is_not(None)))


def bulk_messages() -> list[tuple[str, list]]:
    """The bulk queue's messages in the order a worker takes them (and takes them off)."""
    taken = []
    with celery_app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(BULK)) is not None:
            taken.append((message.headers["task"], message.decode()[0]))
            channel.basic_ack(message.delivery_tag)
    return taken


def test_indexing_hands_its_rest_back_when_verdicts_wait(committed, session_worker_paused):
    ids = parsed_mail(INDEX_STEP * 2 + 3)
    send(CLASSIFY_EMAILS, [[10**9]])  # an imported batch waiting for its verdicts
    try:
        assert index_emails.apply(args=[ids]).get() == INDEX_STEP
        assert indexed_count() == INDEX_STEP
        # The rest goes back to the bulk queue and is taken after the verdicts.
        assert bulk_messages() == [(CLASSIFY_EMAILS, [[10**9]]),
                                   (INDEX_EMAILS, [ids[INDEX_STEP:]])]

        # With no verdict work waiting, one task indexes all it was given.
        assert index_emails.apply(args=[ids[INDEX_STEP:]]).get() == INDEX_STEP + 3
        assert indexed_count() == len(ids)
        assert bulk_messages() == []
    finally:
        celery_app.control.purge()
