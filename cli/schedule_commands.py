"""``spamsift schedule``: the scheduled jobs, when each last ran, and running one now."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from core.config import get_settings
from core.db import session_scope
from workers.schedule import JOBS, SCHEDULE, last_runs


@click.group()
def schedule() -> None:
    """Scheduled jobs (run by `spamsift beat`): retraining, reindexing, purging, reconcile."""


@schedule.command("list")
def schedule_list() -> None:
    """Each job: how often it runs, its last run, how long it took, and how it ended."""
    settings = get_settings()
    with session_scope() as session:
        runs = last_runs(session)
    table = Table("job", "every", "last run", "took", "outcome", "message")
    for job in SCHEDULE:
        every = job.every(settings)
        run = runs.get(job.name)
        took = (f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
                if run and run.finished_at else "")
        table.add_row(job.name, f"{every:g} s" if every else "off",
                      run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run else "never", took,
                      run.outcome if run else "", (run.message or "") if run else "")
    Console().print(table)


@schedule.command("run")
@click.argument("name", type=click.Choice(sorted(JOBS)))
def schedule_run(name: str) -> None:
    """Send the job to the workers now (it still runs once at a time)."""
    from workers.client import BrokerUnavailable, send

    try:
        send(JOBS[name].task)
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name} sent; `spamsift schedule list` shows how it ends")
