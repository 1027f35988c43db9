"""Self-training on the real services: pseudo-labels go to unlabeled mail only, are stored
apart from people's labels, record how each round did on the holdout set, and a person's
label removes one."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from core.db import session_scope
from core.feedback import set_label
from core.models import Email, HoldoutEmail, Job, Label, PseudoLabel, TrainedModel
from tests.integration.conftest import LABELED, invoke
from tests.messages import write_generated_mail
from tests.rows import processed_emails
from tests.waiting import wait_for

UNLABELED = 40


def test_pseudo_labels_never_touch_human_labels(trained, tmp_path):
    write_generated_mail(tmp_path / "unlabeled", UNLABELED, first=LABELED)
    invoke("import", str(tmp_path / "unlabeled"))
    wait_for(lambda: processed_emails(LABELED + UNLABELED), timeout=120)
    result = invoke("adapt", "selftrain", "--rounds", "2", "--confidence", "0.9", "--wait",
                    "--timeout", "300")
    assert "after" in result.stdout and "rounds" in result.stdout

    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.kind == "selftrain"))
        rounds = job.result["rounds"]
        assert rounds[0] == {"round": 0, "model_id": trained, "holdout_f1": rounds[0][
            "holdout_f1"], "spam_share": rounds[0]["spam_share"]}
        assert 0 < rounds[0]["spam_share"] < 1  # the active model's estimate on the mail
        first = rounds[1]
        assert 0 < first["pseudo_labels"] <= UNLABELED
        model = session.get(TrainedModel, first["model_id"])
        assert model.params["data"]["pseudo_labels"] == first["pseudo_labels"]
        assert model.train_size == LABELED - 14 + first["pseudo_labels"]  # no holdout mail
        pseudo = session.scalars(select(PseudoLabel)).all()
        assert pseudo and all(row.job_id == job.id for row in pseudo)
        labels = {email_id: label for email_id, label in session.execute(
            select(Email.id, Email.label).where(Email.id.in_([p.email_id for p in pseudo])))}
        assert set(labels.values()) == {None}  # only mail no person labeled
        assert session.scalar(select(func.count()).select_from(PseudoLabel).join(
            HoldoutEmail, HoldoutEmail.email_id == PseudoLabel.email_id)) == 0

        email = session.get(Email, pseudo[0].email_id)
        opposite = Label.HAM if pseudo[0].label == Label.SPAM else Label.SPAM
        set_label(session, email, opposite, None, "dashboard")
    with session_scope() as session:
        assert session.get(PseudoLabel, email.id) is None
        assert session.get(Email, email.id).label == opposite


def test_bad_options_are_refused_before_anything_is_queued(trained):
    result = CliRunner().invoke(cli, ["adapt", "selftrain", "--confidence", "0.4"])
    assert result.exit_code == 2 and "confidence must be above 0.5" in result.output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.kind == "selftrain")) == 0
