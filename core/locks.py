"""Locks that hold across processes and machines: PostgreSQL advisory locks, which the server
releases when the holder's connection ends, so a killed worker holds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from core.db import get_engine


@contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """Try to take the lock ``name`` without waiting; yields whether this process holds it
    (then until the block ends). Its connection sits outside any transaction meanwhile."""
    with get_engine().connect() as connection:
        held = bool(connection.scalar(
            text("SELECT pg_try_advisory_lock(hashtextextended(:name, 0))"), {"name": name}))
        connection.commit()
        try:
            yield held
        finally:
            if held:
                connection.execute(text("SELECT pg_advisory_unlock(hashtextextended(:name, 0))"),
                                   {"name": name})
                connection.commit()
