"""``spamsift health``: the check a container healthcheck (or a monitor) runs."""

from __future__ import annotations

import json
import sys
import time

import click

from workers.names import QUEUES

# Beat writes its schedule file every few minutes (Celery syncs it at most every 3 minutes
# and wakes at least every 5); older than this, it is stuck or gone.
BEAT_SILENT_SECONDS = 600


@click.command()
@click.option("--worker", "queue", type=click.Choice(QUEUES), default=None,
              help="Also require a worker on this host consuming this queue.")
@click.option("--beat", "beat_alive", is_flag=True,
              help="Also require that beat on this host wrote its schedule lately.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def health(queue: str | None, beat_alive: bool, as_json: bool) -> None:
    """Exit 0 when the database and the broker answer (with --worker: and a worker on this
    host serves the queue; with --beat: and beat runs here), 1 otherwise, saying why."""
    from core.config import get_settings
    from workers import health as checks
    from workers.schedule import beat_schedule_file

    report = {"database": checks.database(), "broker": checks.broker()}
    problems = [f"{name}: {state['error']}" for name, state in report.items() if not state["ok"]]
    if queue and not problems:
        report["worker"] = checks.this_host_serves(queue)
        if not report["worker"]:
            problems.append(f"no worker on this host consumes the {queue} queue")
    if beat_alive:
        schedule = beat_schedule_file(get_settings())  # dbm may add a suffix to the name
        files = list(schedule.parent.glob(schedule.name + "*"))
        age = time.time() - max(f.stat().st_mtime for f in files) if files else None
        report["beat_schedule_age_seconds"] = age
        if age is None or age > BEAT_SILENT_SECONDS:
            problems.append("beat has not written its schedule " + (
                "yet" if age is None else f"for {age:.0f} s"))
    report["problems"] = problems
    click.echo(json.dumps(report) if as_json else "; ".join(problems) or "ok")
    sys.exit(1 if problems else 0)
