"""Storing raw mail: COPY into the real database, deduplicated by SHA-256."""

from __future__ import annotations

from sqlalchemy import func, select

from core.intake import Incoming, store_emails
from core.mail import sha256
from core.models import Email, EmailStatus, Label


def test_store_keeps_raw_bytes_and_dedupes(db, mail_fixture):
    raw = mail_fixture("malformed_message_id.eml")
    other = mail_fixture("plain.eml")
    first = store_emails(db, [Incoming(raw, "test", Label.SPAM, "import"), Incoming(other, "test")])
    assert [s.created for s in first] == [True, True]
    again = store_emails(db, [Incoming(other, "test"), Incoming(raw, "test"),
                              Incoming(raw, "test")])
    assert [s.created for s in again] == [False, False, False]
    assert [s.email_id for s in again] == [first[1].email_id, first[0].email_id,
                                           first[0].email_id]
    email = db.get(Email, first[0].email_id)
    assert email.raw == raw and email.size == len(raw) and email.sha256 == sha256(raw)
    assert email.message_id == "<Mail2L:2122738:fork@bulk.example>"
    assert email.status == EmailStatus.RECEIVED
    assert email.label == Label.SPAM and email.label_source == "import"
    assert email.labeled_at is not None
    assert db.get(Email, first[1].email_id).label is None
    assert db.scalar(select(func.count()).select_from(Email)) == 2


def test_same_bytes_twice_in_one_batch_store_once(db, mail_fixture):
    raw = mail_fixture("plain.eml")
    stored = store_emails(db, [Incoming(raw, "test"), Incoming(raw, "test")])
    assert [s.created for s in stored] == [True, False]
    assert stored[0].email_id == stored[1].email_id
