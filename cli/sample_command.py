"""``spamsift sample``: import the SpamAssassin corpus as labeled sample mail."""

from __future__ import annotations

import click

from core.config import get_settings
from core.corpus import PUBLIC_HOME, corpus_archives, download_corpus


@click.command()
@click.pass_context
def sample(ctx: click.Context) -> None:
    """Import the SpamAssassin public corpus (ham and spam labeled by folder).

    Reads it from SPAMSIFT_SAMPLE_CORPUS_DIR when present, else downloads it from its public
    home into var/corpus (every message checked against the MD5 in its name). Without a
    network it imports nothing and says how to bring your own mail.
    """
    from cli.import_command import import_command

    settings = get_settings()
    archives = corpus_archives(settings.sample_corpus_dir)
    if not archives:
        target = settings.var_dir / "corpus"
        click.echo(f"no corpus in {settings.sample_corpus_dir}; downloading from {PUBLIC_HOME}")
        try:
            archives = download_corpus(target, settings.max_message_bytes)
        except (OSError, ValueError) as exc:
            click.echo(f"could not fetch the sample corpus ({exc}).\n"
                       "Starting empty. Import your own mail with:\n"
                       "  spamsift import PATH... --label spam|ham  (or --label-from-path)")
            return
    ctx.invoke(import_command, paths=tuple(str(p) for p in archives), label=None,
               label_from_path=True, source="sample")
