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
        " label text, label_source text) ON COMMIT DELETE ROWS"
    ))
    connection.execute(text(f"TRUNCATE {_STAGING_TABLE}"))
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(
        f"COPY {_STAGING_TABLE} (position, raw, sha256, size, message_id, source, label,"
        " label_source) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "bytea", "bytea", "int4", "text", "text", "text", "text"])
        for position, (item, digest) in enumerate(zip(items, digests)):
            copy.write_row((
                position, item.raw, digest, len(item.raw), raw_header(item.raw, "Message-ID"),
                item.source, item.label.value if item.label else None,
                item.label_source if item.label else None,
            ))
    inserted = connection.execute(text(
        "INSERT INTO emails (raw, sha256, size, message_id, source, label, label_source,"
        " labeled_at, status)"
        f" SELECT DISTINCT ON (sha256) raw, sha256, size, message_id, source, label::label,"
        "  label_source, CASE WHEN label IS NULL THEN NULL ELSE now() END, 'received'"
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


def store_delivery(session: Session, raw: bytes, source: str, window_hours: int = 24) -> Stored:
    """Store one message a provider delivered, recognising the provider's retries.

    A retry is the same bytes, or, for formats rebuilt from parsed fields, the same raw
    Message-ID, From and Subject header text from the same source within ``window_hours``
    (raw text: the stdlib parser truncates some malformed Message-IDs, which would merge
    different messages). Either way the retry gets the first delivery's id.
    """
    message_id = raw_header(raw, "Message-ID")
    if message_id:
        fingerprint = (raw_header(raw, "From"), raw_header(raw, "Subject"))
        earlier = session.execute(
            select(Email.id, Email.raw).where(
                Email.source == source, Email.message_id == message_id,
                Email.received_at > func.now() - text(f"interval '{int(window_hours)} hours'"))
            .order_by(Email.id)).all()
        for email_id, earlier_raw in earlier:
            if (raw_header(earlier_raw, "From"), raw_header(earlier_raw, "Subject")) == fingerprint:
                return Stored(email_id, False)
    return store_emails(session, [Incoming(raw=raw, source=source)])[0]
