"""Chunk vectors in pgvector: bulk storage, document vectors, nearest labeled emails.

Queries cast to the fixed dimension of the partial HNSW index (``embedding::vector(N)``
where ``dim = N``) so the index serves them; N is always an integer from the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pgvector.psycopg import register_vector
from sqlalchemy import text
from sqlalchemy.orm import Session

EF_SEARCH = 100


def register_vector_types(session: Session):
    """Let psycopg send and receive pgvector values on this session's connection."""
    connection = session.connection().connection.driver_connection
    register_vector(connection)
    return connection


def store_chunks(session: Session, encoder: str,
                 rows: Sequence[tuple[int, int, str, int, int, np.ndarray]]) -> None:
    """COPY (email_id, ordinal, text, char_start, char_end, vector) rows, replacing any
    earlier chunks of those emails for this encoder (re-embedding is idempotent)."""
    if not rows:
        return
    email_ids = sorted({row[0] for row in rows})
    session.execute(text("DELETE FROM chunks WHERE encoder = :encoder AND email_id = ANY(:ids)"),
                    {"encoder": encoder, "ids": email_ids})
    cursor = register_vector_types(session).cursor()
    with cursor.copy("COPY chunks (email_id, encoder, ordinal, text, char_start, char_end, dim,"
                     " embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "varchar", "int4", "text", "int4", "int4", "int4", "vector"])
        for email_id, ordinal, chunk_text, start, end, vector in rows:
            copy.write_row((email_id, encoder, ordinal, chunk_text.replace("\x00", ""), start,
                            end, len(vector), np.asarray(vector, dtype=np.float32)))


def document_vectors(session: Session, encoder: str, email_ids: Sequence[int]
                     ) -> dict[int, np.ndarray]:
    """Each email's document vector: the normalised mean of its chunk vectors."""
    register_vector_types(session)
    rows = session.execute(text(
        "SELECT email_id, avg(embedding) AS mean FROM chunks"
        " WHERE encoder = :encoder AND email_id = ANY(:ids) GROUP BY email_id"
    ), {"encoder": encoder, "ids": list(email_ids)}).all()
    vectors = {}
    for email_id, mean in rows:
        vector = np.asarray(mean.to_numpy() if hasattr(mean, "to_numpy") else mean,
                            dtype=np.float32)
        norm = np.linalg.norm(vector)
        vectors[email_id] = vector / norm if norm else vector
    return vectors


def emails_without_chunks(session: Session, encoder: str, email_ids: Sequence[int]) -> set[int]:
    have = session.execute(text(
        "SELECT DISTINCT email_id FROM chunks WHERE encoder = :encoder AND email_id = ANY(:ids)"
    ), {"encoder": encoder, "ids": list(email_ids)}).scalars()
    return set(email_ids) - set(have)
