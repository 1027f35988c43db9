"""Evaluate a registry model on labeled JSON Lines, streamed in batches.

Each line: ``{"id", "label": "spam"|"ham", "subject", "text"}`` or ``{"id", "label", "raw"}``.
Only labels and scores are kept in memory, so tens of thousands of messages fit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.mail import parse_email
from core.models import TrainedModel
from ml.metrics import binary_metrics
from workers.pipeline import model_text, score_texts


class BadRecord(ValueError):
    """A line of the data file that cannot be evaluated; the message names the line."""


def read_records(path: Path) -> Iterator[tuple[str, bool]]:
    """(model text, is spam) per line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadRecord(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise BadRecord(f"{path}:{number}: expected an object")
            label = record.get("label")
            if label not in ("spam", "ham"):
                raise BadRecord(f"{path}:{number}: label must be 'spam' or 'ham', got {label!r}")
            if isinstance(record.get("raw"), str):
                parsed = parse_email(record["raw"].encode("utf-8", "surrogateescape"))
                subject, text = parsed.subject, parsed.text
            else:
                subject, text = record.get("subject") or "", record.get("text") or ""
                if not isinstance(subject, str) or not isinstance(text, str):
                    raise BadRecord(f"{path}:{number}: subject and text must be strings")
            yield model_text(subject, text), label == "spam"


def _batches(records: Iterator, size: int) -> Iterator[list]:
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate_file(path: Path, model: TrainedModel, batch_size: int,
                  progress_console: Console | None = None) -> dict:
    with open(path, encoding="utf-8") as handle:
        total = sum(1 for line in handle if line.strip())
    scores, labels = [], []
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=progress_console or Console(stderr=True)) as progress:
        task = progress.add_task("eval", total=total)
        for batch in _batches(read_records(path), batch_size):
            texts = [text for text, _ in batch]
            scores.append(score_texts(model, texts, reason_terms=0).p_spam)
            labels.extend(is_spam for _, is_spam in batch)
            progress.advance(task, len(batch))
    if not labels:
        raise BadRecord(f"{path}: no records")
    figures = binary_metrics(np.array(labels), np.concatenate(scores),
                             float(model.thresholds.get("spam", 0.5)))
    figures.pop("threshold")
    return {**figures, "model": model.id}
