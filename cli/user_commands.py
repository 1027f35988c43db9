"""``spamsift users`` and ``spamsift tokens``."""

from __future__ import annotations

import click
from sqlalchemy import select

from core.auth import AuthError, create_api_token, create_user
from core.db import session_scope
from core.models import Role, User


@click.group()
def users() -> None:
    """Dashboard users."""


@users.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="May label, train and change settings.")
@click.password_option(help="Prompted for when not given (or read from SPAMSIFT_PASSWORD).",
                       envvar="SPAMSIFT_PASSWORD")
def users_create(username: str, admin: bool, password: str) -> None:
    """Create a user (a viewer unless --admin)."""
    try:
        with session_scope() as session:
            create_user(session, username, password, Role.ADMIN if admin else Role.VIEWER)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {'admin' if admin else 'viewer'} {username}")


@click.group()
def tokens() -> None:
    """API bearer tokens."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What the token is for, e.g. 'mailgun'.")
def tokens_create(username: str, name: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    with session_scope() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        token = create_api_token(session, user, name)
    click.echo(token)
