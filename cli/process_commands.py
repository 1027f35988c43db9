"""``spamsift worker``, ``beat`` and ``web``: the long-running processes."""

from __future__ import annotations

import os
import sys

import click

from workers.app import QUEUES


@click.command()
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues to consume.")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Worker processes (default: one per core).")
@click.option("--pool", default="prefork", show_default=True,
              type=click.Choice(["prefork", "solo", "threads"]))
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(queues: str, concurrency: int | None, pool: str, loglevel: str) -> None:
    """Run a Celery worker."""
    from workers.app import celery_app

    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise click.BadParameter(f"unknown queue(s): {', '.join(sorted(unknown))}",
                                 param_hint="--queues")
    # A node name per process, so several workers on one host never clash.
    argv = ["worker", "-Q", queues, "--pool", pool, "--loglevel", loglevel,
            "--hostname", f"spamsift-{os.getpid()}@%h"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    celery_app.worker_main(argv)


@click.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the periodic scheduler (reconcile stuck emails, and later reindex and retrain)."""
    from core.config import get_settings
    from workers.app import celery_app

    schedule_file = get_settings().var_dir / "celerybeat-schedule"
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
                "web:create_app()"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
