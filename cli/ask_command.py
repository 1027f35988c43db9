"""``spamsift ask``: a question about the mail, answered with citations."""

from __future__ import annotations

import json

import click


@click.command("ask")
@click.argument("question")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=120.0, show_default=True)
def ask_command(question: str, as_json: bool, timeout: float) -> None:
    """Retrieve the best passages and answer from them (on a realtime worker)."""
    from workers.remote import ask_remote

    try:
        result = ask_remote(question, timeout=timeout)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(result["answer"])
    for note in result["notes"]:
        click.echo(f"({note})")
    click.echo("\nSources:")
    for passage in result["passages"]:
        mark = "*" if passage["number"] in result["citations"] else " "
        click.echo(f" {mark}[{passage['number']}] email {passage['email_id']}: "
                   f"{passage['subject'] or '(no subject)'}")
