"""``spamsift jobs``: follow and cancel background work (imports, training, re-scoring)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from core.db import session_scope
from core.models import Job


@click.group()
def jobs() -> None:
    """Background jobs: imports, training, re-scoring."""


@jobs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
def jobs_list(limit: int) -> None:
    """The newest jobs with their state and progress."""
    with session_scope() as session:
        rows = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
    table = Table("id", "kind", "state", "progress", "message", "created")
    for job in rows:
        progress = f"{job.done}/{job.total}" if job.total else str(job.done)
        table.add_row(str(job.id), job.kind, job.state.value, progress, job.message or "",
                      job.created_at.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)


@jobs.command("cancel")
@click.argument("job_id", type=int)
def jobs_cancel(job_id: int) -> None:
    """Cancel a queued or running job; a training run stops within seconds."""
    from workers.client import cancel_job

    try:
        with session_scope() as session:
            cancel_job(session, job_id)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"job {job_id} cancelled")
