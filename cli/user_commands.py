"""``spamsift users`` and ``spamsift tokens``."""

from __future__ import annotations

import json
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from core.auth import (AuthError, create_api_token, create_user, disable_user, get_user,
                       list_tokens, parse_scopes, revoke_token, set_password)
from core.db import session_scope
from core.models import ApiToken, Role

password_option = click.password_option(
    help="Prompted for when not given (or read from SPAMSIFT_PASSWORD).",
    envvar="SPAMSIFT_PASSWORD")


@contextmanager
def auth_errors():
    """An AuthError (no such user, weak password…) as a one-line error, not a traceback."""
    try:
        yield
    except AuthError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def users() -> None:
    """Dashboard users."""


@users.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="May label, train and change settings.")
@password_option
def users_create(username: str, admin: bool, password: str) -> None:
    """Create a user (a viewer unless --admin)."""
    with auth_errors(), session_scope() as session:
        create_user(session, username, password, Role.ADMIN if admin else Role.VIEWER)
    click.echo(f"created {'admin' if admin else 'viewer'} {username}")


@users.command("passwd")
@click.argument("username")
@password_option
def users_passwd(username: str, password: str) -> None:
    """Set a user's password; their dashboard sessions end."""
    with auth_errors(), session_scope() as session:
        set_password(session, get_user(session, username), password)
    click.echo(f"password of {username} changed; their sessions have ended")


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Stop a user: no more logins, their sessions end and their tokens are revoked."""
    with auth_errors(), session_scope() as session:
        disable_user(session, get_user(session, username))
    click.echo(f"disabled {username}; their sessions have ended and tokens are revoked")


@click.group()
def tokens() -> None:
    """API bearer tokens."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What the token is for, e.g. 'postfix'.")
@click.option("--scope", "scopes", required=True,
              help="Comma-separated: ingest (deliver mail: /webhooks/raw, /api/classify), "
                   "read (read the API), admin (everything). A viewer's token can only read.")
@click.option("--expires-days", type=int, default=None,
              help="Stop working after this many days (default: never).")
def tokens_create(username: str, name: str, scopes: str, expires_days: int | None) -> None:
    """Create a token and print it once (only its hash is stored)."""
    with auth_errors(), session_scope() as session:
        token = create_api_token(session, get_user(session, username), name,
                                 parse_scopes(scopes), expires_days)
    click.echo(token)


def _token_summary(token: ApiToken) -> dict:
    return {"id": token.id, "prefix": token.prefix, "user": token.user.username,
            "name": token.name, "scopes": token.scopes, "created_at": token.created_at,
            "last_used_at": token.last_used_at, "expires_at": token.expires_at,
            "revoked_at": token.revoked_at}


def _day(moment) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "-"


@tokens.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tokens_list(username: str | None, as_json: bool) -> None:
    """Every token (never the token itself): prefix, scopes, use, expiry, revocation."""
    with session_scope() as session:
        rows = [_token_summary(token) for token in list_tokens(session, username)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table("id")
    table.add_column("prefix", no_wrap=True)
    for column in ("user", "name", "scopes", "created", "last used", "expires", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["prefix"], row["user"], row["name"],
                      ",".join(row["scopes"]), _day(row["created_at"]),
                      _day(row["last_used_at"]), _day(row["expires_at"]),
                      _day(row["revoked_at"]))
    Console().print(table)


@tokens.command("revoke")
@click.argument("token")
def tokens_revoke(token: str) -> None:
    """Revoke a token by its id or prefix (see `spamsift tokens list`)."""
    with auth_errors(), session_scope() as session:
        revoked = _token_summary(revoke_token(session, token))
    click.echo(f"revoked token {revoked['id']} ({revoked['prefix']}, {revoked['name']}) "
               f"of {revoked['user']}")
