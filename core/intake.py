"""Store incoming raw messages: deduplicated by SHA-256, bulk-loaded with COPY.

Everything that brings mail in (import, webhooks, uploads) stores it here with status
``received``; workers parse it afterwards. The caller commits, then enqueues the new ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.mail import raw_header, sha256
from core.models import Email, Label

_STAGING_TABLE = "incoming_emails"


@dataclass(frozen=True)
class Incoming:
    raw: bytes
    source: str
    label: Label | None = None
    label_source: str | None = None
    content_digest: bytes | None = None  # rebuilt deliveries only (core/compose.py)


@dataclass(frozen=True)
class Stored:
    email_id: int
    created: bool  # False: the same bytes were already stored


def store_emails(session: Session, items: list[Incoming]) -> list[Stored]:
    """Insert the messages not stored yet; return one ``Stored`` per item, in order.

    Rows go through a temporary table loaded with binary COPY, then one
    ``INSERT ... ON CONFLICT (sha256) DO NOTHING``, so concurrent imports never duplicate.
    """
    if not items:
        return []
    digests = [sha256(item.raw) for item in items]
    connection = session.connection()
    connection.execute(text(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING_TABLE} ("
        " position int, raw bytea, sha256 bytea, size int, message_id text, source text,"
        " label text, label_source text, content_digest bytea) ON COMMIT DELETE ROWS"
    ))
    connection.execute(text(f"TRUNCATE {_STAGING_TABLE}"))
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(
        f"COPY {_STAGING_TABLE} (position, raw, sha256, size, message_id, source, label,"
        " label_source, content_digest) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "bytea", "bytea", "int4", "text", "text", "text", "text",
                        "bytea"])
        for position, (item, digest) in enumerate(zip(items, digests)):
            copy.write_row((
                position, item.raw, digest, len(item.raw), raw_header(item.raw, "Message-ID"),
                item.source, item.label.value if item.label else None,
                item.label_source if item.label else None, item.content_digest,
            ))
    inserted = connection.execute(text(
        "INSERT INTO emails (raw, sha256, size, message_id, source, label, label_source,"
        " labeled_at, status, content_digest)"
        f" SELECT DISTINCT ON (sha256) raw, sha256, size, message_id, source, label::label,"
        "  label_source, CASE WHEN label IS NULL THEN NULL ELSE now() END, 'received',"
        "  content_digest"
        f" FROM {_STAGING_TABLE} ORDER BY sha256, position"
        " ON CONFLICT (sha256) DO NOTHING RETURNING id, sha256"
    )).all()
    created = {bytes(row.sha256): row.id for row in inserted}
    missing = [d for d in set(digests) if d not in created]
    existing = {}
    if missing:
        existing = {
            bytes(row.sha256): row.id
            for row in connection.execute(
                text("SELECT id, sha256 FROM emails WHERE sha256 = ANY(:digests)"),
                {"digests": missing},
            )
        }
    results = []
    claimed: set[bytes] = set()
    for digest in digests:
        if digest in created and digest not in claimed:
            claimed.add(digest)
            results.append(Stored(created[digest], True))
        else:
            results.append(Stored(created.get(digest) or existing[digest], False))
    return results


def store_delivery(session: Session, raw: bytes, source: str,
                   content_digest: bytes | None = None, window_hours: int = 24) -> Stored:
    """Store one message a provider delivered, recognising the provider's retries.

    A retry is the same bytes, or, for formats rebuilt from parsed fields, the same content
    digest (identity headers, bodies and attachments: ``core.compose``) from the same source
    within ``window_hours``. Headers the sender chooses never make a retry on their own, so
    a message cannot take over the verdict of an earlier one by copying its Message-ID,
    From and Subject. The comparison runs in SQL on the stored digest.
    """
    if content_digest is not None:
        earlier = session.scalar(
            select(Email.id).where(
                Email.source == source, Email.content_digest == content_digest,
                Email.received_at > func.now() - text(f"interval '{int(window_hours)} hours'"))
            .order_by(Email.id).limit(1))
        if earlier is not None:
            return Stored(earlier, False)
    return _store_one(session, raw, source, content_digest)


def _store_one(session: Session, raw: bytes, source: str, content_digest: bytes | None
               ) -> Stored:
    """``store_emails`` for a single message in one statement (a delivery waits for it; the
    staging table and COPY pay off only for batches)."""
    digest = sha256(raw)
    inserted = session.execute(text(
        "INSERT INTO emails (raw, sha256, size, message_id, source, status, content_digest)"
        " VALUES (:raw, :sha256, :size, :message_id, :source, 'received', :content_digest)"
        " ON CONFLICT (sha256) DO NOTHING RETURNING id"),
        {"raw": raw, "sha256": digest, "size": len(raw),
         "message_id": raw_header(raw, "Message-ID"), "source": source,
         "content_digest": content_digest}).scalar()
    if inserted is not None:
        return Stored(inserted, True)
    return Stored(session.scalar(select(Email.id).where(Email.sha256 == digest)), False)
