"""``spamsift import``: bring mail in from files, folders and archives."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

from core.config import get_settings
from core.importers import count_messages
from core.models import Label


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--label", type=click.Choice([label.value for label in Label]),
              help="Label every imported message.")
@click.option("--label-from-path", is_flag=True,
              help="Label by folder or archive name: spam* → spam, *ham* → ham.")
@click.option("--source", default="import", show_default=True,
              help="Where the mail came from, stored with each email.")
def import_command(paths: tuple[str, ...], label: str | None, label_from_path: bool,
                   source: str) -> None:
    """Import .eml files, mbox, Maildir, directories and .tar/.tar.gz/.tar.bz2/.zip archives."""
    from workers.importing import import_paths

    if label and label_from_path:
        raise click.UsageError("use --label or --label-from-path, not both")
    console = Console(stderr=True)
    total = count_messages(paths, get_settings().max_message_bytes)
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("import", total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:,.0f} msg/s" if speed else "")

        summary = import_paths(paths, label=Label(label) if label else None,
                               label_from_path=label_from_path, source=source,
                               expected_total=total, on_progress=advance)

    labels = ", ".join(f"{name} {count}" for name, count in sorted(summary.labels.items()))
    click.echo(f"imported {summary.imported}" + (f" ({labels})" if labels else "")
               + f", duplicates {summary.duplicates}, failed {summary.failed}"
               + (f", skipped {summary.skipped} non-mail files" if summary.skipped else ""))
    if summary.imported == 0 and summary.duplicates:
        click.echo("nothing new: every message was already stored")
    for reason, count in summary.failure_reasons.most_common():
        click.echo(f"  failed ({count}): {reason}")
    for origin, reason in summary.failures:
        click.echo(f"    {origin}: {reason}")
    if summary.not_enqueued:
        click.echo(f"warning: the broker is down; {summary.not_enqueued} emails are stored and "
                   "will be judged when it is back (the reconciler picks them up)", err=True)
    click.echo(f"job {summary.job_id}; verdicts follow on the workers (job "
               f"{summary.classify_job_id}), then search indexing")
