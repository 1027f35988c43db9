"""Scheduled retraining on the real services: feedback triggers a retrain whose model is
activated when the holdout set finds it no worse; a model trained on flipped labels is
refused and the active one kept; the holdout set keeps its labels whatever feedback says;
one run of a scheduled job at a time, even with two beat processes."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from core.config import get_settings
from core.db import session_scope
from core.feedback import set_label
from core.models import Email, HoldoutEmail, Job, JobState, Label, ScheduledRun, TrainedModel
from core.registry import active_model
from tests.conftest import TEST_DATABASE_URL
from tests.integration.conftest import LABELED, finished, invoke
from tests.messages import write_generated_mail
from tests.rows import processed_emails
from tests.stack import deployment
from tests.waiting import wait_for
from workers.client import send
from workers.names import RETRAIN
from workers.schedule import run_scheduled

def retrain_job() -> Job | None:
    with session_scope() as session:
        return session.scalar(select(Job).where(Job.params["guard"]["active_model_id"]
                                                .is_not(None)).order_by(Job.id.desc()))


def test_the_first_model_trains_beside_a_holdout_set_it_never_sees(trained):
    with session_scope() as session:
        held = dict(session.execute(select(HoldoutEmail.email_id, HoldoutEmail.label)).all())
        model = session.get(TrainedModel, trained)
        assert sorted(held.values()).count(Label.SPAM) == 7 and len(held) == 14
        assert model.train_size == LABELED - 14
        assert model.params["normalise"] is True  # SPAMSIFT_TFIDF_NORMALISE's default
        assert all(session.get(Email, email_id).label == label
                   for email_id, label in held.items())


def test_feedback_triggers_a_retrain_whose_model_is_activated(trained, tmp_path, client,
                                                              api_token):
    """Ten labels given over the API (the retrain threshold here) make the next scheduled
    check queue a training job; its model is no worse on the holdout set, so it is active."""
    write_generated_mail(tmp_path / "new", 10, first=LABELED)
    invoke("import", str(tmp_path / "new"))
    wait_for(lambda: processed_emails(LABELED + 10), timeout=120)
    send(RETRAIN, kwargs={"from_beat": True})
    wait_for(lambda: last_run("retrain"), timeout=60)
    assert "not due: 0 new labels" in last_run("retrain").message

    with session_scope() as session:
        new = session.execute(select(Email.id, Email.message_id)
                              .where(Email.label.is_(None))).all()
    for email_id, message_id in new:  # <generated-N@...>: spam for even N
        number = int(message_id.split("-")[1].split("@")[0])
        response = client.post(f"/api/emails/{email_id}/label",
                               headers={"Authorization": f"Bearer {api_token}"},
                               json={"label": "spam" if number % 2 == 0 else "ham"})
        assert response.status_code == 200, response.get_json()
    send(RETRAIN)  # as an operator's "run now" (beat's copy ran a moment ago)
    job = wait_for(lambda: retrain_job() and finished(retrain_job().id), timeout=120)
    assert job.state == JobState.SUCCEEDED, job.message
    decision = job.result["retrain"]
    assert decision["activated"], decision
    assert decision["against_model_id"] == trained
    assert decision["holdout"]["candidate"]["n"] == 14
    with session_scope() as session:
        model = active_model(session)
        assert model.id == job.result["model_id"] != trained
        assert model.kind == "tfidf-nb" and model.train_size == LABELED - 14 + 10


def test_a_model_trained_on_flipped_labels_is_refused(trained):
    """Every label flipped by feedback, the holdout set's included: the holdout keeps the
    labels it was made with, judges the new model worse and keeps the active one."""
    with session_scope() as session:
        for email in session.scalars(select(Email)):
            set_label(session, email, Label.HAM if email.label == Label.SPAM else Label.SPAM,
                      None, "api")
    send(RETRAIN)
    job = wait_for(lambda: retrain_job() and finished(retrain_job().id), timeout=120)
    assert job.state == JobState.SUCCEEDED, job.message
    decision = job.result["retrain"]
    assert not decision["activated"] and "F1 on the holdout set" in decision["reason"]
    assert decision["holdout"]["candidate"]["f1"] < decision["holdout"]["active"]["f1"]
    assert "kept the active model" in job.message
    with session_scope() as session:
        assert active_model(session).id == trained
        assert session.get(TrainedModel, job.result["model_id"]).is_active is False
        flipped = session.scalar(select(func.count()).select_from(HoldoutEmail).join(
            Email, Email.id == HoldoutEmail.email_id).where(Email.label != HoldoutEmail.label))
        assert flipped == 14


def last_run(name: str) -> ScheduledRun | None:
    with session_scope() as session:
        return session.scalar(select(ScheduledRun).where(ScheduledRun.name == name,
                                                         ScheduledRun.finished_at.is_not(None))
                              .order_by(ScheduledRun.id.desc()))


def test_a_scheduled_job_runs_once_at_a_time(committed):
    """Two copies sent together: one runs, the other finds the lock taken; a copy from beat
    right after a run does nothing; asked for again, it runs."""
    settings = get_settings()
    inside = threading.Event()
    release = threading.Event()
    ran = []

    def slow() -> tuple[str, None]:
        ran.append(1)
        inside.set()
        release.wait(30)
        return "done", None

    first = threading.Thread(target=run_scheduled, args=("retrain", slow, settings, True))
    first.start()
    assert inside.wait(30)
    assert run_scheduled("retrain", slow, settings) is None  # the lock is taken
    release.set()
    first.join(30)
    assert run_scheduled("retrain", slow, settings, from_beat=True) is None  # ran just now
    run_scheduled("retrain", lambda: ("again", None), settings)  # not from beat: runs
    assert len(ran) == 1
    with session_scope() as session:
        runs = session.execute(select(ScheduledRun.outcome, ScheduledRun.message)
                               .order_by(ScheduledRun.id)).all()
    assert [tuple(run) for run in runs] == [("ok", "done"), ("ok", "again")]


def test_two_beat_processes_never_run_a_job_twice(committed, private_redis, tmp_path):
    """Two `spamsift beat` processes (two machines' worth) each send the retrain check every
    3 s to one worker: the runs stay one per interval, never two within half of one."""
    every = 3.0
    with deployment(tmp_path / "a", TEST_DATABASE_URL, private_redis.url(),
                    RETRAIN_CHECK_SECONDS=int(every)) as first, \
            deployment(tmp_path / "b", TEST_DATABASE_URL, private_redis.url(),
                       RETRAIN_CHECK_SECONDS=int(every)) as second:
        first.start("worker", "worker", "-Q", "bulk", "-c", "1")
        first.start("beat", "beat")
        second.start("beat", "beat")
        wait_for(lambda: run_starts("retrain") and len(run_starts("retrain")) >= 2,
                 timeout=60, log_path=first.log("worker"))
        watched_from = time.monotonic()
        time.sleep(5 * every)
        watched = time.monotonic() - watched_from
        starts = run_starts("retrain")
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert min(gaps) >= every / 2, (gaps, first.logs(), second.logs())
    assert len(starts) <= 2 + watched / every + 1, gaps


def run_starts(name: str) -> list[float]:
    with session_scope() as session:
        return [started.timestamp() for started in session.scalars(
            select(ScheduledRun.started_at).where(ScheduledRun.name == name)
            .order_by(ScheduledRun.started_at))]


def test_the_schedule_page_lists_each_job_and_its_last_run(trained, client):
    from core.auth import create_user
    from core.models import Role
    from tests.integration.conftest import login

    send(RETRAIN)
    wait_for(lambda: last_run("retrain"), timeout=60)
    with session_scope() as session:
        create_user(session, "victor", "battery staple", Role.VIEWER)
    login(client, "victor", "battery staple")
    page = client.get("/schedule").get_data(as_text=True)
    for name in ("reconcile", "retrain", "reindex", "drift", "refit", "selftrain", "purge"):
        assert f"<td>{name}</td>" in page
    assert "not due: 0 new labels" in page and "Run now" not in page  # a viewer's view
    assert "7 spam and 7 ham emails are set aside" in page
