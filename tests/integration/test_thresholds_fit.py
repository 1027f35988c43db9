"""Thresholds on the deployment's own mail, on the real services: the estimated false-positive
rate on hams the model never trained on, re-fitting (by hand and as a scheduled job) that the
worker's next verdict follows, and the drift check's alert."""

from __future__ import annotations

import json

from sqlalchemy import select

from core.auth import create_user
from core.db import session_scope
from core.models import Prediction, Role, ScheduledRun, TrainedModel
from tests.integration.conftest import LABELED, invoke, login
from tests.messages import generated_message
from tests.rows import processed_emails
from tests.waiting import wait_for
from workers.client import send
from workers.names import CHECK_DRIFT, REFIT_THRESHOLDS


def import_generated(folder, numbers) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        (folder / f"{n}.eml").write_bytes(generated_message(n))
    invoke("import", str(folder))


def scheduled_run(name: str) -> ScheduledRun | None:
    with session_scope() as session:
        return session.scalar(select(ScheduledRun).where(
            ScheduledRun.name == name, ScheduledRun.finished_at.is_not(None)))


def test_refit_then_the_next_verdict_uses_the_new_thresholds(trained, settings, tmp_path,
                                                             client):
    settings(DRIFT_MIN_EMAILS=10)
    import_generated(tmp_path / "recent", range(LABELED, LABELED + 20))
    wait_for(lambda: processed_emails(LABELED + 20), timeout=120)
    health = json.loads(invoke("models", "refit", "--check").stdout)
    assert health["labeled_fpr"]["hams"] == 7  # the holdout set's hams
    assert health["unlabeled"] == 20 and health["fit"] is None
    expected = health["expected_fpr"]  # ham-like and spam-like mail: two groups apart
    assert expected["emails"] == 20 and expected["low"] <= expected["fpr"] <= expected["high"]
    with session_scope() as session:
        create_user(session, "alice", "correct horse", Role.VIEWER)
    login(client, "alice", "correct horse")
    shown = client.get("/models").get_data(as_text=True)
    interval = (f"{100 * expected['low']:.2f}–{100 * expected['high']:.2f} %")
    assert f'id="expected-fpr">{100 * expected["fpr"]:.2f} %' in shown and interval in shown
    with session_scope() as session:
        before = session.get(TrainedModel, trained).thresholds

    send(REFIT_THRESHOLDS)
    wait_for(lambda: scheduled_run("refit"), timeout=60)
    assert scheduled_run("refit").outcome == "ok", scheduled_run("refit").message
    with session_scope() as session:
        model = session.get(TrainedModel, trained)
        assert model.params["thresholds_fit"]["previous"] == before
        assert model.params["thresholds_fit"]["unlabeled"] == 20
        after = model.thresholds
    assert after["spam"] != before["spam"]

    import_generated(tmp_path / "next", [LABELED + 100])
    wait_for(lambda: processed_emails(LABELED + 21), timeout=120)
    with session_scope() as session:
        newest = session.scalar(select(Prediction).order_by(Prediction.id.desc()))
        assert newest.thresholds["spam"] == after["spam"]  # the worker saw the re-fit


def test_too_little_mail_to_refit_is_said_plainly(trained):
    result = invoke("models", "refit", "--check")
    assert json.loads(result.stdout)["psi"] is None  # no recent unlabeled mail
    from click.testing import CliRunner

    from cli.main import cli

    refused = CliRunner().invoke(cli, ["models", "refit"])
    assert refused.exit_code == 1 and "re-fitting needs 200" in refused.output


def test_mail_unlike_the_training_mail_raises_the_drift_alert(trained, settings, tmp_path,
                                                              client):
    """Only spam arrives: the scores' distribution moves far from the one the threshold was
    chosen on (half ham); the drift check warns, and so does the Models page."""
    settings(DRIFT_MIN_EMAILS=10)
    import_generated(tmp_path / "spam-wave", range(LABELED, LABELED + 60, 2))
    wait_for(lambda: processed_emails(LABELED + 30), timeout=120)
    send(CHECK_DRIFT)
    wait_for(lambda: scheduled_run("drift"), timeout=60)
    assert "drifted" in scheduled_run("drift").message, scheduled_run("drift").message

    with session_scope() as session:
        create_user(session, "alice", "correct horse", Role.ADMIN)
    login(client, "alice", "correct horse")
    models_page = client.get("/models").get_data(as_text=True)
    assert 'id="drift-alert"' in models_page and "re-fit the thresholds" in models_page
