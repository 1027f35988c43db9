"""The connection pool on a real PostgreSQL: a connection the server dropped while it sat
idle in the pool is replaced before use, without a ping on every checkout."""

from __future__ import annotations

import time

import psycopg
import pytest

import core.db
from tests.conftest import TEST_DATABASE_URL


@pytest.fixture
def pool(engine):
    """An engine of its own (one pooled connection in use at a time), disposed after."""
    separator = "&" if "?" in TEST_DATABASE_URL else "?"
    own = core.db.get_engine(f"{TEST_DATABASE_URL}{separator}application_name=pool-test")
    yield own
    own.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def terminate(pid: int) -> None:
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the backend is gone once the server has let go of it


def test_a_connection_dropped_while_idle_is_replaced_before_use(pool, monkeypatch):
    monkeypatch.setattr(core.db, "PING_AFTER_IDLE_SECONDS", 0.1)
    pid = backend_pid(pool)
    assert backend_pid(pool) == pid  # the one pooled connection
    terminate(pid)
    time.sleep(0.2)  # idle for longer than PING_AFTER_IDLE_SECONDS
    assert backend_pid(pool) != pid


def test_a_connection_in_steady_use_is_not_pinged(pool, monkeypatch):
    pings = []
    monkeypatch.setattr(pool.dialect, "do_ping", lambda connection: pings.append(1))
    monkeypatch.setattr(core.db, "PING_AFTER_IDLE_SECONDS", 60.0)
    for _ in range(5):
        backend_pid(pool)
    assert pings == []
    monkeypatch.setattr(core.db, "PING_AFTER_IDLE_SECONDS", 0.0)
    time.sleep(0.01)
    backend_pid(pool)
    assert pings == [1]
