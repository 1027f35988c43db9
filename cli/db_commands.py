"""``spamsift db``: migrations."""

from __future__ import annotations

import click

from core import migrate


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    migrate.upgrade(revision=revision)
    click.echo(f"database at {revision}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    migrate.downgrade(revision=revision)
    click.echo(f"database at {revision}")


@db.command()
def check() -> None:
    """Fail if the ORM models and the migrations disagree."""
    migrate.check()
    click.echo("models and migrations agree")
