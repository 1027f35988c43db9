"""``spamsift worker``, ``beat`` and ``web``: the long-running processes."""

from __future__ import annotations

import os
import sys

import click

from cli.supervise import run_together
from workers.names import QUEUES, REALTIME


@click.command()
@click.option("--queues", "-Q", default=None,
              help="Comma-separated queues to consume in one pool (default: every queue, "
                   "each in a worker of its own).")
@click.option("--share-realtime", is_flag=True,
              help="Let realtime share a pool with bulk or training (verdicts then wait "
                   "behind their work).")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Processes per worker (default: one per core).")
@click.option("--pool", default="prefork", show_default=True,
              type=click.Choice(["prefork", "solo", "threads"]))
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None,
              help="The worker's node name, NAME@HOST (default: spamsift-<pid>@<this host>; "
                   "with one worker per queue, the queue's name is added to NAME).")
@click.option("--restart/--no-restart", default=True,
              help="Start a worker again when it dies (a crash on a broker outage, the "
                   "out-of-memory killer); --no-restart runs it in this process, for a "
                   "process manager that restarts it.")
def worker(queues: str | None, share_realtime: bool, concurrency: int | None, pool: str,
           loglevel: str, hostname: str | None, restart: bool) -> None:
    """Run Celery workers: one per queue, or one for the queues given with -Q.

    Realtime work (webhook verdicts, query embeddings) never waits behind a bulk import or a
    training run: without -Q every queue gets its own worker process, and -Q refuses to put
    realtime in one pool with the others unless --share-realtime is given."""
    options = ["--pool", pool, "--loglevel", loglevel]
    if concurrency:
        options += ["--concurrency", str(concurrency)]
    # What this command runs under supervision: itself, with the worker in that process.
    supervised = [sys.executable, "-m", "cli", "worker", "--no-restart", *options]
    if queues is None:
        sys.exit(run_together({f"worker-{queue}": supervised + ["-Q", queue, *_named(
            hostname, queue)] for queue in QUEUES}))
    names = set(queues.split(","))
    unknown = names - set(QUEUES)
    if unknown:
        raise click.BadParameter(f"unknown queue(s): {', '.join(sorted(unknown))}",
                                 param_hint="--queues")
    if REALTIME in names and len(names) > 1 and not share_realtime:
        raise click.UsageError(
            f"realtime would share a pool with {', '.join(sorted(names - {REALTIME}))}, and "
            "verdicts would wait behind that work: run a worker per queue (no -Q), or pass "
            "--share-realtime")
    if restart:
        shared = ["--share-realtime"] if share_realtime else []
        sys.exit(run_together({f"worker-{queues}": supervised + [
            "-Q", queues, *shared, *_named(hostname)]}))
    from workers.app import celery_app

    # A node name per process, so several workers on one host never clash.
    celery_app.worker_main(["worker", "-Q", queues, *options,
                            "--hostname", hostname or f"spamsift-{os.getpid()}@%h"])


def _named(hostname: str | None, queue: str | None = None) -> list[str]:
    """The --hostname option to pass on (one per queue: NAME-QUEUE@HOST)."""
    if hostname is None:
        return []
    if queue is not None:
        name, _, host = hostname.partition("@")
        hostname = f"{name}-{queue}@{host}" if host else f"{name}-{queue}"
    return ["--hostname", hostname]


@click.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the periodic scheduler: the jobs in workers/schedule.py (reconcile, retrain,
    reindex)."""
    from core.config import get_settings
    from workers.app import celery_app
    from workers.schedule import beat_schedule_file

    schedule_file = beat_schedule_file(get_settings())
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "--loglevel", loglevel, "--schedule", str(schedule_file)])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "-w", "processes", default=2, show_default=True, type=int,
              help="gunicorn worker processes.")
def web(host: str, port: int, processes: int) -> None:
    """Serve the web app (dashboard, API, webhooks) with gunicorn.

    Threaded workers (gthread): a request waiting for a verdict holds one thread, never a
    whole process, so waits cannot starve webhooks; every wait ends before the timeout.
    """
    from gunicorn.app.wsgiapp import WSGIApplication

    from core.config import get_settings
    from core.secret_key import flask_secret_key

    settings = get_settings()
    flask_secret_key(settings)  # a weak key: a clear error here, not in every worker
    sys.argv = ["gunicorn", "--bind", f"{host}:{port}", "--workers", str(processes),
                "--worker-class", "gthread", "--threads", str(settings.web_threads),
                "--timeout", str(settings.web_timeout),
                "--access-logfile", "-", "--logger-class", "web.access_log.RedactingLogger",
                "--config", "python:web.gunicorn_hooks",
                "web:create_app()"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
