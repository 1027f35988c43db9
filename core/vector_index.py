"""Keeping the HNSW indexes lean after an encoder change.

Chunks of every vector space share one HNSW index per dimension (``core.models``). Once the
mail has vectors in a new space, the old space's chunks only slow searches down and take
room, so they are deleted; an index whose entries were largely deleted (pgvector then keeps
the dead entries in its graph until a vacuum repairs it, slowly), or that an interrupted
build left invalid, is rebuilt with ``REINDEX INDEX CONCURRENTLY``: searches and inserts go
on meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import get_engine
from core.models import INDEXED_DIMENSIONS

log = logging.getLogger(__name__)

DELETE_BATCH = 5000
# Rebuild when at least this share of an index's entries was deleted since it was built.
REBUILD_AFTER_DELETED_SHARE = 0.25


def index_name(dim: int) -> str:
    return f"ix_chunks_embedding_hnsw_{dim}"


def retire_spaces(session: Session, keep: Collection[str]) -> dict[int, int]:
    """Delete the chunks of every vector space not in ``keep``, a batch per transaction (no
    long lock on the table); returns the chunks deleted per dimension."""
    deleted: dict[int, int] = {}
    while True:
        rows = session.execute(text(
            "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE encoder <> ALL(:keep) "
            "LIMIT :batch) RETURNING dim"), {"keep": list(keep), "batch": DELETE_BATCH}).all()
        session.commit()
        for (dim,) in rows:
            deleted[dim] = deleted.get(dim, 0) + 1
        if len(rows) < DELETE_BATCH:
            return deleted


def invalid_indexes(session: Session) -> list[str]:
    """The chunks table's HNSW indexes that a failed or interrupted build left invalid: the
    index itself, or the ``…_ccnew`` copy an interrupted ``REINDEX CONCURRENTLY`` leaves."""
    return list(session.scalars(text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'chunks'::regclass AND NOT i.indisvalid "
        "AND c.relname LIKE 'ix\\_chunks\\_embedding\\_hnsw\\_%' ORDER BY c.relname")))


def rebuild(dim: int) -> float:
    """``REINDEX INDEX CONCURRENTLY`` the HNSW index of ``dim`` (outside any transaction, as
    PostgreSQL requires); returns the seconds it took."""
    started = time.perf_counter()
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"REINDEX INDEX CONCURRENTLY {index_name(dim)}"))
    return time.perf_counter() - started


def _drop_concurrently(name: str) -> None:
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))


def maintain(session: Session, keep: Collection[str]) -> str:
    """Retire the spaces not in ``keep`` and rebuild the indexes that need it; returns a
    one-line summary."""
    deleted = retire_spaces(session, keep)
    invalid = invalid_indexes(session)
    session.commit()
    for name in invalid:
        if "_ccnew" in name:  # the copy an interrupted rebuild left (…_ccnew, …_ccnew1)
            _drop_concurrently(name)
    notes = []
    for dim in INDEXED_DIMENSIONS:
        live = session.scalar(text("SELECT count(*) FROM chunks WHERE dim = :dim"), {"dim": dim})
        session.commit()
        gone = deleted.get(dim, 0)
        if index_name(dim) in invalid:
            reason = "it was invalid"
        elif gone and gone >= REBUILD_AFTER_DELETED_SHARE * (gone + live):
            reason = f"{gone} of its {gone + live} entries were deleted"
        else:
            if gone:
                notes.append(f"deleted {gone} chunks of {dim} dimensions")
            continue
        seconds = rebuild(dim)
        log.info("rebuilt %s in %.1f s: %s", index_name(dim), seconds, reason)
        notes.append(f"rebuilt {index_name(dim)} ({reason}) in {seconds:.1f} s")
    return "; ".join(notes) or "the vector indexes need nothing"
