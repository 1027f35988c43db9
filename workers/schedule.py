"""The scheduled jobs, declared in one place: what ``spamsift beat`` sends and how often, and
how each run is recorded (the dashboard's Schedule page and ``spamsift schedule list``).

A run holds a PostgreSQL advisory lock named after its job, so a second copy (a second beat
process, or a run that outlasts its interval) finds it taken and does nothing. A run sent by
beat also does nothing when another run of the job started less than half an interval ago:
two beat processes each send every job, and their copies can arrive one after the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, func, select, update

from core.config import Settings
from core.db import after_commit, session_scope
from core.locks import exclusive
from core.metrics import count
from core.models import ScheduledRun
from workers.names import (CHECK_DRIFT, PURGE_RAW, RECONCILE, REFIT_THRESHOLDS, REINDEX,
                           RETRAIN, SCHEDULED_ADAPTATION, SCHEDULED_SELF_TRAINING)

log = logging.getLogger(__name__)

RUNS_KEPT = 50  # per job; older runs are deleted as new ones finish
T = TypeVar("T")


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    task: str
    does: str
    every: Callable[[Settings], float]  # seconds between runs; 0 = off
    setting: str  # the SPAMSIFT_* setting that sets ``every``


SCHEDULE = (
    ScheduledJob("reconcile", RECONCILE,
                 "re-sends work whose message was lost, and training jobs whose worker was",
                 # often enough that a lost message delays an email by about the grace period
                 lambda s: max(10.0, s.reconcile_after_seconds / 5),
                 "SPAMSIFT_RECONCILE_AFTER_SECONDS (a fifth of it)"),
    ScheduledJob("retrain", RETRAIN,
                 "trains a model of the active kind once enough new labels arrived (or the "
                 "active model is old); activates it only if the holdout set says it is not "
                 "worse", lambda s: s.retrain_check_seconds, "SPAMSIFT_RETRAIN_CHECK_SECONDS"),
    ScheduledJob("reindex", REINDEX,
                 "embeds mail that has no vectors in the configured vector space, in batches "
                 "behind every verdict; then deletes the vectors of spaces nothing reads and "
                 "rebuilds the HNSW index concurrently when needed",
                 lambda s: s.reindex_every_seconds, "SPAMSIFT_REINDEX_EVERY_SECONDS"),
    ScheduledJob("drift", CHECK_DRIFT,
                 "compares the active model's scores on recent mail with those its thresholds "
                 "were chosen on; warns when they drifted apart",
                 lambda s: s.drift_check_seconds, "SPAMSIFT_DRIFT_CHECK_SECONDS"),
    ScheduledJob("refit", REFIT_THRESHOLDS,
                 "re-fits the active model's thresholds on recent mail and the labels given "
                 "since it was trained", lambda s: s.refit_every_seconds,
                 "SPAMSIFT_REFIT_EVERY_SECONDS"),
    ScheduledJob("selftrain", SCHEDULED_SELF_TRAINING,
                 "queues self-training from the active model on the unlabeled mail",
                 lambda s: s.selftrain_every_seconds, "SPAMSIFT_SELFTRAIN_EVERY_SECONDS"),
    ScheduledJob("adapt-mlm", SCHEDULED_ADAPTATION,
                 "queues masked-LM adaptation of the encoder to the stored mail (a new "
                 "encoder version)", lambda s: s.adapt_mlm_every_seconds,
                 "SPAMSIFT_ADAPT_MLM_EVERY_SECONDS"),
    ScheduledJob("purge", PURGE_RAW,
                 "empties the raw message of mail judged more than SPAMSIFT_RETENTION_DAYS ago "
                 "(text, verdicts and vectors stay); off while that is 0",
                 lambda s: s.purge_every_seconds if s.retention_days else 0,
                 "SPAMSIFT_PURGE_EVERY_SECONDS"),
)
JOBS = {job.name: job for job in SCHEDULE}


def beat_schedule_file(settings: Settings) -> Path:
    """Where beat keeps its schedule; beat writes it every few minutes while it runs."""
    return settings.var_dir / "celerybeat-schedule"


def beat_schedule(settings: Settings) -> dict:
    """Celery beat's entries: every job that is on, sent with ``from_beat``."""
    return {job.name: {"task": job.task, "schedule": job.every(settings),
                       "kwargs": {"from_beat": True}}
            for job in SCHEDULE if job.every(settings) > 0}


def run_scheduled(name: str, body: Callable[[], tuple[str, T]], settings: Settings,
                  from_beat: bool = False) -> T | None:
    """Run ``body`` as the scheduled job ``name`` unless another run holds it (or, sent by
    beat, ran within half an interval); record the run. ``body`` returns (a one-line
    summary for the record, the value to return)."""
    with exclusive(f"schedule:{name}") as mine:
        if not mine:
            log.info("scheduled %s: not run, another run holds it", name)
            return None
        with session_scope() as session:
            if from_beat and _ran_lately(session, name, JOBS[name].every(settings) / 2):
                log.info("scheduled %s: not run, it ran less than half an interval ago", name)
                return None
            # Holding the lock, no other run of the job is alive: one still "running" was lost.
            session.execute(update(ScheduledRun).where(
                ScheduledRun.name == name, ScheduledRun.outcome == "running").values(
                outcome="lost", message="its worker stopped before it finished"))
            run = ScheduledRun(name=name, outcome="running")
            session.add(run)
            session.flush()
            run_id = run.id
        try:
            message, value = body()
        except Exception as exc:
            _finish(run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        _finish(run_id, "ok", message)
        return value


def _ran_lately(session, name: str, seconds: float) -> bool:
    return session.scalar(select(func.count()).select_from(ScheduledRun).where(
        ScheduledRun.name == name,
        ScheduledRun.started_at > func.clock_timestamp() - timedelta(seconds=seconds))) > 0


def _finish(run_id: int, outcome: str, message: str) -> None:
    with session_scope() as session:
        run = session.get(ScheduledRun, run_id)
        run.outcome, run.message = outcome, message[:2000]
        run.finished_at = func.clock_timestamp()
        name = run.name
        after_commit(session, lambda: count(lambda m: m.scheduled_runs.labels(name, outcome).inc()))
        kept = (select(ScheduledRun.id).where(ScheduledRun.name == run.name)
                .order_by(ScheduledRun.started_at.desc()).limit(RUNS_KEPT))
        session.execute(delete(ScheduledRun).where(ScheduledRun.name == run.name,
                                                   ScheduledRun.id.not_in(kept)))


def last_runs(session) -> dict[str, ScheduledRun]:
    """Each job's newest run."""
    newest = (select(ScheduledRun.name, func.max(ScheduledRun.started_at).label("at"))
              .group_by(ScheduledRun.name).subquery())
    runs = session.scalars(select(ScheduledRun).join(
        newest, (ScheduledRun.name == newest.c.name) & (ScheduledRun.started_at == newest.c.at)))
    return {run.name: run for run in runs}
