"""``spamsift up``, ``down`` and ``run``: local services and the whole stack."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import click

from cli.supervise import run_together
from core import metrics, migrate, services
from core.config import get_settings
from core.secret_key import ensure_secret_key_file, flask_secret_key
from workers.names import BULK, QUEUES


@click.command()
@click.option("--migrate/--no-migrate", "run_migrations", default=True,
              help="Bring the schema up to date (default: yes).")
def up(run_migrations: bool) -> None:
    """Start embedded PostgreSQL and Redis where none is configured, and migrate."""
    settings = get_settings()
    database_url = services.database_url(settings)
    broker_url = services.broker_url(settings)
    where = "embedded under " + str(settings.var_dir)
    click.echo(f"database: {_hide_password(database_url)} "
               f"({where if not settings.database_url else 'configured'})")
    click.echo(f"broker:   {_hide_password(broker_url)} "
               f"({where if not settings.broker_url else 'configured'})")
    if run_migrations:
        migrate.upgrade(database_url)
        click.echo("database schema up to date")


@click.command()
def down() -> None:
    """Stop the embedded PostgreSQL and Redis (configured servers are left alone)."""
    settings = get_settings()
    stopped = []
    if not settings.broker_url and services.stop_embedded_redis(settings.var_dir):
        stopped.append("redis")
    if not settings.database_url and services.stop_embedded_postgres(settings.var_dir):
        stopped.append("postgres")
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Serve everything: the web app, one worker per queue, and beat; a process that
    crashes is started again. Ctrl-C stops all.

    Without SPAMSIFT_SECRET_KEY, a random key is made once and kept in var/secret_key."""
    settings = get_settings()
    key = settings.secret_key or ensure_secret_key_file(settings.var_dir)
    flask_secret_key(replace(settings, secret_key=key))  # a weak key stops us before starting
    environment = {**os.environ, "SPAMSIFT_SECRET_KEY": key}  # for every process started here
    services.database_url(settings)
    services.broker_url(settings)
    metrics.clear()  # counters start again with the processes that write them
    spamsift = [sys.executable, "-m", "cli"]
    # A worker per queue, so a verdict never waits behind a bulk import or a training run.
    commands = {
        "web": spamsift + ["web", "--host", host, "--port", str(port)],
        # Bulk (imports, re-scoring, indexing) gets a process per core; realtime and training
        # one each.
        **{f"worker-{queue}": spamsift + ["worker", "--no-restart", "-Q", queue, "-c",
                                          str(os.cpu_count() or 1) if queue == BULK else "1"]
           for queue in QUEUES},
        "beat": spamsift + ["beat"],
    }
    click.echo(f"spamsift is serving on http://{host}:{port}/ (Ctrl-C to stop)")
    sys.exit(run_together(commands, env=environment))


def _hide_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"
