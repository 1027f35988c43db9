"""``spamsift search``: find mail by words, meaning, or both."""

from __future__ import annotations

import json

import click

from core.db import session_scope
from core.search import MODES, SearchFilter, search


@click.command("search")
@click.argument("query")
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True)
@click.option("--k", "k", default=10, show_default=True, type=click.IntRange(1, 200))
@click.option("--label", type=click.Choice(["spam", "ham", "none"]))
@click.option("--verdict", type=click.Choice(["spam", "unsure", "ham"]))
@click.option("--sender", help="Address or domain substring.")
@click.option("--json", "as_json", is_flag=True)
def search_command(query: str, mode: str, k: int, label: str | None, verdict: str | None,
                   sender: str | None, as_json: bool) -> None:
    """Search mail (the query is embedded by a realtime worker for vector and hybrid)."""
    from workers.remote import remote_query_embedder

    filters = SearchFilter(label=label, verdict=verdict, sender=sender)
    try:
        with session_scope() as session:
            hits = search(session, query, mode, k, filters, remote_query_embedder())
    except TimeoutError as exc:  # celery raises its TimeoutError subclass
        raise click.ClickException("no realtime worker answered to embed the query") from exc
    if as_json:
        click.echo(json.dumps([{
            "email_id": h.email_id, "score": h.score, "subject": h.subject,
            "sender": h.sender, "label": h.label, "snippet": h.snippet or h.chunk_text,
            "ranks": h.ranks} for h in hits], default=str))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank:>3}. [{hit.score:.4f}] email {hit.email_id} "
                   f"({hit.label or 'unlabeled'}) {hit.subject or '(no subject)'} — {hit.sender}")
        excerpt = (hit.snippet or hit.chunk_text or "").replace("\n", " ")
        if excerpt:
            click.echo(f"       {excerpt[:200]}")
    if not hits:
        click.echo("nothing found")
