"""``spamsift adapt``: adapt the encoder to the stored mail, and list the adapted versions."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from cli.model_commands import queue_and_follow, timeout_option, wait_option
from core.db import session_scope
from core.models import EncoderVersion
from ml.mlm import MlmSettings
from ml.selftrain import SHARE_FROM, SelfTrainSettings


@click.group()
def adapt() -> None:
    """Adapt the encoder to your mail (runs on a training worker)."""


@adapt.command("mlm")
@click.option("--steps", type=int, default=MlmSettings.steps, show_default=True,
              help="Adapter steps, after the head's warm-up.")
@click.option("--head-steps", type=int, default=MlmSettings.head_steps, show_default=True,
              help="Steps that warm up the masked-LM head alone first.")
@click.option("--max-length", type=int, default=MlmSettings.max_length, show_default=True,
              help="Tokens of each email read.")
@click.option("--batch-size", type=int, default=MlmSettings.batch_size, show_default=True)
@click.option("--lr", type=float, default=MlmSettings.lr, show_default=True)
@wait_option
@timeout_option
def adapt_mlm(wait: bool, timeout: float, **options) -> None:
    """Masked-language-model training of the encoder on all stored mail (labeled and not),
    as LoRA adapters; the result is a new encoder version that `spamsift train lora` and
    `train linear` can start from (--encoder-version)."""
    from workers.client import queue_adaptation

    job = queue_and_follow(lambda session: queue_adaptation(session, options), "adaptation",
                           wait, timeout)
    if job is None:
        return
    metrics = job.result["metrics"]
    click.echo(f"encoder version {job.result['encoder_version']} ({job.result['name']}): "
               f"held-out masked-token loss {metrics['held_out_loss_before']:.3f} → "
               f"{metrics['held_out_loss_after']:.3f}")


@adapt.command("selftrain")
@click.option("--rounds", type=int, default=SelfTrainSettings.rounds, show_default=True,
              help="At most this many rounds; one that does no better stops the run.")
@click.option("--confidence", type=float, default=SelfTrainSettings.confidence,
              show_default=True, help="p(spam) at least this is pseudo-spam, at most 1 - "
              "this pseudo-ham.")
@click.option("--max-per-class", type=int, default=SelfTrainSettings.max_per_class,
              show_default=True, help="Pseudo-labels of each class a round may add.")
@click.option("--share-from", type=click.Choice(SHARE_FROM),
              default=SelfTrainSettings.share_from, show_default=True,
              help="The pseudo-labels' spam share: the active model's estimate on the "
                   "unlabeled mail, or the human labels' share.")
@wait_option
@timeout_option
def adapt_selftrain(wait: bool, timeout: float, **options) -> None:
    """Self-training from the active model on the unlabeled mail: confident verdicts become
    pseudo-labels (stored as such, never over a person's label), a model of the active kind
    is trained on them and the labels; a round's model no worse on the holdout set than the
    best so far becomes the best, and a round that does not improve ends the run; the best
    model is activated."""
    from workers.client import queue_self_training

    job = queue_and_follow(lambda session: queue_self_training(session, options),
                           "self-training", wait, timeout)
    if job is not None:
        click.echo(job.message)


@adapt.command("list")
@click.option("--json", "as_json", is_flag=True)
def adapt_list(as_json: bool) -> None:
    """The adapted encoder versions, newest first."""
    with session_scope() as session:
        rows = session.scalars(select(EncoderVersion).order_by(EncoderVersion.id.desc())).all()
    if as_json:
        click.echo(json.dumps([{"id": row.id, "name": row.name, "params": row.params,
                                "data": row.data, "metrics": row.metrics,
                                "created_at": row.created_at} for row in rows],
                              indent=2, default=str))
        return
    table = Table("id", "name", "emails", "labeled", "loss before", "loss after", "created")
    for row in rows:
        table.add_row(str(row.id), row.name, str(row.data.get("emails")),
                      str(row.data.get("labeled")),
                      f"{row.metrics['held_out_loss_before']:.3f}",
                      f"{row.metrics['held_out_loss_after']:.3f}",
                      row.created_at.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)
