"""Bulk import: read messages from files and archives, store them, enqueue their parsing.

Runs in the process that calls it (the CLI, or a worker handling an upload). Each batch is
committed before its ids are enqueued, and one bad file never stops the rest.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from celery import shared_task
from sqlalchemy import func, select

from core.config import get_settings
from core.db import session_scope
from core.importers import RawMessage, count_messages, iter_messages, label_from_origin
from core.intake import Incoming, store_emails
from core.jobs import create_job, finish_job
from core.models import Job, JobState, Label
from workers.client import BrokerUnavailable, send_in_batches
from workers.names import CLASSIFY_EMAILS, IMPORT_UPLOAD

log = logging.getLogger(__name__)
MAX_LISTED_FAILURES = 20


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0  # files that are not mail (a README in a folder of messages)
    failed: int = 0
    labels: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # first few (origin, reason)
    failure_reasons: Counter = field(default_factory=Counter)
    not_enqueued: int = 0  # stored, but the broker was down: the reconciler will send them
    job_id: int | None = None
    classify_job_id: int | None = None  # verdicts for the new emails, on the workers

    @property
    def seen(self) -> int:
        return self.imported + self.duplicates + self.skipped + self.failed


def import_paths(
    paths: Iterable[str | os.PathLike],
    *,
    label: Label | None = None,
    label_from_path: bool = False,
    source: str = "import",
    expected_total: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    job_id: int | None = None,
) -> ImportSummary:
    """Import everything under ``paths``; progress goes to job ``job_id`` (made if None)."""
    settings = get_settings()
    summary = ImportSummary()
    paths = list(paths)
    with session_scope() as session:
        if job_id is None:
            job = create_job(session, "import", total=expected_total, params={
                "paths": [os.fspath(p) for p in paths], "source": source,
                "label": label.value if label else None, "label_from_path": label_from_path})
        else:
            job = session.get(Job, job_id)
            job.state, job.total = JobState.RUNNING, expected_total
            job.started_at = func.clock_timestamp()
        classify_job = create_job(session, "ingest", total=0, state=JobState.QUEUED)
        summary.job_id, summary.classify_job_id = job.id, classify_job.id

    batch: list[tuple[RawMessage, Incoming]] = []
    try:
        for message in iter_messages(paths, settings.max_message_bytes):
            if message.data is None:
                if message.not_mail:
                    summary.skipped += 1
                else:
                    _record_failure(summary, message.name, message.error or "unreadable")
                if on_progress:
                    on_progress(1)
                continue
            message_label = label or (label_from_origin(message.origin) if label_from_path
                                      else None)
            batch.append((message, Incoming(raw=message.data, source=source,
                                            label=message_label,
                                            label_source="import" if message_label else None)))
            if len(batch) >= settings.import_batch_size:
                _flush(batch, summary, on_progress)
                batch = []
        _flush(batch, summary, on_progress)
    except BaseException as exc:
        with session_scope() as session:
            finish_job(session, session.get(Job, summary.job_id), JobState.FAILED,
                       message=f"stopped: {type(exc).__name__}: {exc}", result=_result(summary))
        raise
    with session_scope() as session:
        import_job = session.get(Job, summary.job_id)
        import_job.done = summary.seen
        finish_job(session, import_job, JobState.SUCCEEDED, result=_result(summary))
        if not summary.imported:
            finish_job(session, session.get(Job, summary.classify_job_id), JobState.SUCCEEDED,
                       message="nothing new to process")
    return summary


@shared_task(name=IMPORT_UPLOAD, bind=True)
def import_upload(self, job_id: int, path: str, label: str | None = None) -> int:
    """Import a file uploaded through the dashboard, then delete it.

    The job runs once: a second message for it (the reconciler re-sent it while the first
    waited in the queue) does nothing, unless it is the broker redelivering the message of
    a worker that died in the middle (importing again is harmless: stored mail dedupes).
    """
    upload = Path(path)
    startable = [JobState.QUEUED]
    if self.request.delivery_info and self.request.delivery_info.get("redelivered"):
        startable.append(JobState.RUNNING)
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.id == job_id, Job.state.in_(startable))
                             .with_for_update())
        if job is None:
            log.info("upload job %s has already run; message ignored", job_id)
            return 0
        if not upload.is_file():
            finish_job(session, job, JobState.FAILED,
                       message="the uploaded file is gone: upload it again")
            shutil.rmtree(upload.parent, ignore_errors=True)
            return 0
        job.state, job.started_at = JobState.RUNNING, func.clock_timestamp()
    try:
        summary = import_paths(
            [upload], label=Label(label) if label in ("spam", "ham") else None,
            label_from_path=label == "path", source="upload",
            expected_total=count_messages([upload], get_settings().max_message_bytes),
            job_id=job_id)
    finally:
        shutil.rmtree(upload.parent, ignore_errors=True)
    return summary.imported


def _record_failure(summary: ImportSummary, origin: str, reason: str) -> None:
    summary.failed += 1
    summary.failure_reasons[reason.split(":")[0]] += 1
    if len(summary.failures) < MAX_LISTED_FAILURES:
        summary.failures.append((origin, reason))


def _flush(batch: list[tuple[RawMessage, Incoming]], summary: ImportSummary,
           on_progress: Callable[[int], None] | None) -> None:
    if not batch:
        return
    settings = get_settings()
    with session_scope() as session:
        stored = store_emails(session, [incoming for _, incoming in batch])
        new_ids = [s.email_id for s in stored if s.created]
        if new_ids:
            classify_job = session.get(Job, summary.classify_job_id)
            classify_job.total = (classify_job.total or 0) + len(new_ids)
            classify_job.state = JobState.RUNNING
        import_job = session.get(Job, summary.job_id)
        import_job.done = summary.seen + len(batch)
    for (_, incoming), result in zip(batch, stored):
        if result.created:
            summary.imported += 1
            summary.labels[incoming.label.value if incoming.label else "unlabeled"] += 1
        else:
            summary.duplicates += 1
    if new_ids:
        try:
            send_in_batches(CLASSIFY_EMAILS, new_ids, settings.enqueue_batch_size,
                            job_id=summary.classify_job_id)
        except BrokerUnavailable:
            summary.not_enqueued += len(new_ids)
    if on_progress:
        on_progress(len(batch))


def _result(summary: ImportSummary) -> dict:
    return {
        "imported": summary.imported, "duplicates": summary.duplicates,
        "skipped": summary.skipped, "failed": summary.failed,
        "labels": dict(summary.labels), "failures": summary.failures,
        "not_enqueued": summary.not_enqueued,
    }
