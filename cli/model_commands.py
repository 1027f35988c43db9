"""``spamsift train``, ``models``, ``eval`` and ``classify``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from core.db import session_scope
from core.mailbox import wait_for_prediction
from core.models import Job, JobState, TrainedModel
from core.registry import UnknownModel, active_model, get_model
from ml.classifiers import CASCADE, LINEAR, TFIDF_LR, TFIDF_NB
from ml.encoder import POOLINGS
from ml.hybrid import HYBRID
from ml.lora_settings import LORA, TARGETS, LoraSettings

FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def follow_job(job_id: int, timeout: float) -> Job:
    """Show a job's progress until it finishes; the finished row is returned."""
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task("queued", total=None)
        while True:
            with session_scope() as session:
                job = session.get(Job, job_id)
            progress.update(task, description=job.message or job.state.value,
                            completed=job.done, total=job.total)
            if job.state in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise click.ClickException(f"job {job_id} still {job.state.value} after "
                                           f"{timeout:.0f} s (is a training worker running?)")
            time.sleep(0.5)


def queue_and_follow(queue, what: str, wait: bool, timeout: float) -> Job | None:
    """``queue(session)`` a job (a ValueError is a bad option), and with ``wait`` follow it
    to its end; the finished job, or None without ``wait``."""
    try:
        with session_scope() as session:
            job_id = queue(session).id
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(f"{what} job {job_id} queued on the training queue")
    if not wait:
        return None
    job = follow_job(job_id, timeout)
    if job.state != JobState.SUCCEEDED:
        raise click.ClickException(f"{what} {job.state.value}: {job.message}")
    return job


def _train(kind: str, pooling: str | None, wait: bool, make_active: bool, timeout: float,
           options: dict | None = None, encoder_version: int | None = None) -> None:
    from workers.client import queue_training

    job = queue_and_follow(lambda session: queue_training(
        session, kind, pooling, make_active, options, encoder_version), "training", wait,
        timeout)
    if job is None:
        return
    metrics = job.result["metrics"]
    click.echo(f"model {job.result['model_id']} trained"
               f"{' and active' if make_active else ''}: " + _figures(metrics))


def _figures(metrics: dict) -> str:
    parts = []
    for name in ("f1", "precision", "recall", "fpr", "roc_auc"):
        if metrics.get(name) is not None:
            parts.append(f"{name} {metrics[name]:.4f}")
    return ", ".join(parts)


wait_option = click.option("--wait/--no-wait", default=False,
                           help="Follow the job until the model is trained.")
activate_option = click.option("--activate/--no-activate", "make_active", default=True,
                               help="Make the new model the active one (default: yes).")
timeout_option = click.option("--timeout", default=3600.0, show_default=True,
                              help="Seconds to wait with --wait.")
encoder_version_option = click.option(
    "--encoder-version", type=int, default=None,
    help="Start from this adapted encoder version (`spamsift adapt list`), not the encoder "
         "as shipped.")


@click.group()
def train() -> None:
    """Train a classifier on the labeled emails (runs on a training worker)."""


@train.command("linear")
@click.option("--pooling", type=click.Choice(POOLINGS), default=None,
              help="Encoder pooling (default: SPAMSIFT_ENCODER_POOLING).")
@encoder_version_option
@wait_option
@activate_option
@timeout_option
def train_linear(pooling: str | None, encoder_version: int | None, wait: bool,
                 make_active: bool, timeout: float) -> None:
    """Logistic regression on encoder vectors."""
    _train(LINEAR, pooling, wait, make_active, timeout, encoder_version=encoder_version)


@train.command("cascade")
@click.option("--pooling", type=click.Choice(POOLINGS), default=None,
              help="Encoder pooling of the second stage (default: SPAMSIFT_ENCODER_POOLING).")
@wait_option
@activate_option
@timeout_option
def train_cascade(pooling: str | None, wait: bool, make_active: bool, timeout: float) -> None:
    """TF-IDF logistic regression decides the mail it is sure of, a linear model on the
    encoder the rest; "sure" is chosen on out-of-fold scores so that F1 stays within 0.002
    of the encoder model alone."""
    _train(CASCADE, pooling, wait, make_active, timeout)


@train.command("hybrid")
@click.option("--pooling", type=click.Choice(POOLINGS), default=None,
              help="Encoder pooling of the language-model stage (default: "
                   "SPAMSIFT_ENCODER_POOLING).")
@wait_option
@activate_option
@timeout_option
def train_hybrid(pooling: str | None, wait: bool, make_active: bool, timeout: float) -> None:
    """TF-IDF logistic regression and a linear model on the encoder, weighed by a logistic
    regression over their out-of-fold scores."""
    _train(HYBRID, pooling, wait, make_active, timeout)


@train.command("lora")
@click.option("--r", type=int, default=LoraSettings.r, show_default=True,
              help="Rank of the adapters.")
@click.option("--alpha", type=int, default=LoraSettings.alpha, show_default=True,
              help="Scale of the adapters (alpha / r).")
@click.option("--dropout", type=float, default=LoraSettings.dropout, show_default=True)
@click.option("--target", default=",".join(LoraSettings.target), show_default=True,
              help=f"Comma-separated modules to adapt, among {', '.join(TARGETS)}.")
@click.option("--epochs", type=int, default=LoraSettings.epochs, show_default=True)
@click.option("--lr", type=float, default=LoraSettings.lr, show_default=True,
              help="Peak learning rate.")
@click.option("--max-length", type=int, default=LoraSettings.max_length, show_default=True,
              help="Tokens of each email the model reads.")
@click.option("--batch-size", type=int, default=LoraSettings.batch_size, show_default=True)
@click.option("--max-steps", type=int, default=LoraSettings.max_steps, show_default=True,
              help="Stop after this many steps (0: the epochs decide).")
@encoder_version_option
@wait_option
@activate_option
@timeout_option
def train_lora(encoder_version: int | None, wait: bool, make_active: bool, timeout: float,
               **options) -> None:
    """Fine-tune the encoder with LoRA adapters: a validation part is held out, training
    stops early when its F1 stops improving, and thresholds are chosen on it. Progress,
    cancel (`spamsift jobs cancel`) and resume after a lost worker go through the job."""
    _train(LORA, None, wait, make_active, timeout, options, encoder_version)


@train.command("baseline")
@click.option("--algorithm", type=click.Choice(["nb", "lr"]), default="nb", show_default=True,
              help="Naive Bayes or logistic regression on TF-IDF.")
@click.option("--if-no-model", is_flag=True,
              help="Do nothing when a model is already active (for first start-up).")
@wait_option
@activate_option
@timeout_option
def train_baseline(algorithm: str, if_no_model: bool, wait: bool, make_active: bool,
                   timeout: float) -> None:
    """TF-IDF + naive Bayes or logistic regression: the classical baseline and cold start."""
    if if_no_model:
        with session_scope() as session:
            current = active_model(session)
        if current is not None:
            click.echo(f"model {current.id} is active; not training")
            return
    _train(TFIDF_NB if algorithm == "nb" else TFIDF_LR, None, wait, make_active, timeout)


@click.group()
def models() -> None:
    """The model registry."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json: bool) -> None:
    """Every trained model, newest first."""
    with session_scope() as session:
        rows = session.scalars(select(TrainedModel).order_by(TrainedModel.id.desc())).all()
    if as_json:
        click.echo(json.dumps([_model_summary(m) for m in rows], indent=2, default=str))
        return
    table = Table("id", "active", "kind", "encoder", "train size", "f1", "fpr", "roc_auc",
                  "created")
    for model in rows:
        m = model.metrics
        table.add_row(str(model.id), "*" if model.is_active else "", model.kind,
                      model.encoder or "-", str(model.train_size), _num(m.get("f1")),
                      _num(m.get("fpr")), _num(m.get("roc_auc")),
                      model.created_at.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _model_summary(model: TrainedModel) -> dict:
    return {"id": model.id, "kind": model.kind, "encoder": model.encoder,
            "active": model.is_active, "train_size": model.train_size, "params": model.params,
            "metrics": model.metrics, "thresholds": model.thresholds,
            "confusion": model.confusion, "created_at": model.created_at}


@models.command("activate")
@click.argument("model_id", type=int)
def models_activate(model_id: int) -> None:
    """Make MODEL_ID the active model (it re-scores the mail on a bulk worker)."""
    from workers.client import activate_model

    try:
        with session_scope() as session:
            activate_model(session, model_id)
    except UnknownModel as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model {model_id} is active; re-scoring the mail on the bulk workers")


@models.command("rollback")
def models_rollback() -> None:
    """Activate the model that was active before the current one."""
    from workers.client import roll_back_model

    try:
        with session_scope() as session:
            model_id = roll_back_model(session).id
    except UnknownModel as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"rolled back: model {model_id} is active")


@models.command("refit")
@click.option("--check", is_flag=True, help="only show how the thresholds hold now")
def models_refit(check: bool) -> None:
    """Re-fit the active model's thresholds on this deployment's recent mail and the labels
    given since it was trained; with --check, show the estimated false-positive rate and
    drift only."""
    from core.config import get_settings
    from core.thresholds_fit import refit, threshold_health

    settings = get_settings()
    with session_scope() as session:
        model = active_model(session)
        if model is None:
            raise click.ClickException("no active model")
        if not check:
            try:
                click.echo(refit(session, model, settings))
            except ValueError as exc:
                raise click.ClickException(str(exc)) from exc
        health = threshold_health(session, model, settings)
    click.echo(json.dumps(health, indent=2, default=str))


@click.command("eval")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labeled JSON Lines: id, label, subject, text (or raw).")
@click.option("--model", "model_ref", default="active", show_default=True,
              help="A model id, or 'active'.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--batch-size", default=256, show_default=True, type=int)
def evaluate(data_path: str, model_ref: str, as_json: bool, batch_size: int) -> None:
    """Score a model on labeled mail (runs here, in batches, with bounded memory)."""
    from cli.evaluation import BadRecord, evaluate_file

    with session_scope() as session:
        try:
            model = (active_model(session) if model_ref == "active"
                     else get_model(session, int(model_ref)))
        except (UnknownModel, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        if model is None:
            raise click.ClickException("no active model: train one first")
        session.expunge(model)
    try:
        figures = evaluate_file(Path(data_path), model, batch_size,
                                progress_console=Console(stderr=True))
    except BadRecord as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(figures))
    else:
        click.echo(f"model {model.id} ({model.kind}) on {figures['n']} messages: "
                   + _figures(figures) + f", accuracy {figures['accuracy']:.4f}")


@click.command()
@click.argument("message", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds to wait for the realtime worker.")
def classify(message, as_json: bool, timeout: float) -> None:
    """Store MESSAGE (a raw .eml, or - for standard input) and show its verdict."""
    from core.config import get_settings
    from sqlalchemy.exc import DBAPIError

    from core.verdicts import verdict_view
    from workers.client import accept_message

    raw = message.read(get_settings().max_message_bytes + 1)
    if len(raw) > get_settings().max_message_bytes:
        raise click.ClickException("message larger than SPAMSIFT_MAX_MESSAGE_BYTES")
    if not raw.strip():
        raise click.ClickException("the message is empty")
    try:
        stored = accept_message(raw, "cli")
    except DBAPIError as exc:
        raise click.ClickException(f"database unavailable: {exc.orig or exc}") from exc
    prediction = wait_for_prediction(stored.email_id, int(timeout * 1000))
    if prediction is None:
        raise click.ClickException(
            f"no verdict for email {stored.email_id} within {timeout:.0f} s "
            "(is a model active and a realtime worker running?)")
    result = {"email_id": stored.email_id, "duplicate": not stored.created,
              **verdict_view(prediction)}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"email {result['email_id']}: {result['verdict'].upper()} "
               f"(p_spam {result['p_spam']:.4f}; spam ≥ {result['thresholds']['spam']:.4f}, "
               f"ham < {result['thresholds']['ham']:.4f}; model {result['model_id']})")
    for term in result["reasons"].get("terms", []):
        click.echo(f"  {term['weight']:+.3f} {term['term']}")
    for neighbor in result["reasons"].get("neighbors", []):
        click.echo(f"  {neighbor['similarity']:.3f} {neighbor['label']:<4} email "
                   f"{neighbor['email_id']}: {neighbor['subject'] or '(no subject)'}")


