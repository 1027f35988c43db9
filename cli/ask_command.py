"""``spamsift ask``: a question about the mail, answered with citations."""

from __future__ import annotations

import json

import click

from core.search import highlight_parts


@click.command("ask")
@click.argument("question")
@click.option("--include-spam", is_flag=True,
              help="Also retrieve spam (left out by default: outside mail must not steer "
                   "answers).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=120.0, show_default=True)
def ask_command(question: str, include_spam: bool, as_json: bool, timeout: float) -> None:
    """Retrieve the best passages and answer from them (on a realtime worker)."""
    from workers.remote import ask_remote

    try:
        result = ask_remote(question, {"exclude_spam": not include_spam}, timeout=timeout)
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(highlighted(result["answer"]))
    for note in result["notes"]:
        click.echo(f"({note})")
    click.echo("\nSources:")
    for passage in result["passages"]:
        mark = "*" if passage["number"] in result["citations"] else " "
        click.echo(f" {mark}[{passage['number']}] email {passage['email_id']} "
                   f"({passage['label'] or 'unlabeled'}, verdict "
                   f"{passage['verdict'] or 'none'}): {passage['subject'] or '(no subject)'}")


def highlighted(text: str) -> str:
    """The [[word]] markers of keyword snippets as bold (plain when not on a terminal)."""
    return "".join(click.style(part, bold=True) if matched else part
                   for part, matched in highlight_parts(text))
