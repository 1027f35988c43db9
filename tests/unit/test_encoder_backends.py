"""The ONNX Runtime backends against the PyTorch reference: the same vectors (fp32), nearly the
same (int8, a vector space of its own), and the same verdicts on the hand-written mail."""

from __future__ import annotations

import numpy as np
import pytest

from ml.classifiers import validate
from ml.encoder import BACKENDS, Encoder, EncoderConfig
from ml.linear import train_linear_probe
from tests.unit.test_ml import labeled_texts


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx")
    return {backend: Encoder(EncoderConfig(max_length=128, batch_size=8, backend=backend,
                                           cache_dir=cache, pooling="mean"))
            for backend in BACKENDS}


@pytest.fixture(scope="module")
def chunk_texts(encoders):
    """Every chunk of the labeled mail, as indexing embeds them."""
    texts, _ = labeled_texts()
    return [chunk.text for text in texts for chunk in encoders["torch"].chunk(text)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)  # the vectors are unit length


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_onnx_fp32_gives_the_torch_vectors(encoders, chunk_texts, pooling):
    reference = encoders["torch"].embed(chunk_texts, pooling)
    onnx = encoders["onnx"].embed(chunk_texts, pooling)
    assert cosines(reference, onnx).min() >= 0.999
    assert encoders["onnx"].name_for(pooling) == encoders["torch"].name_for(pooling)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_int8_is_close_and_a_vector_space_of_its_own(encoders, chunk_texts, pooling):
    reference = encoders["torch"].embed(chunk_texts, pooling)
    int8 = encoders["onnx-int8"].embed(chunk_texts, pooling)
    assert cosines(reference, int8).min() >= 0.97
    assert cosines(reference, int8).mean() >= 0.99
    assert encoders["onnx-int8"].name_for(pooling) == \
        encoders["torch"].name_for(pooling) + ";int8"


def test_every_backend_gives_the_same_verdicts(encoders):
    """A model trained on reference vectors judges the fixtures alike from any backend's."""
    texts, y = labeled_texts()
    probe, oof, _ = train_linear_probe(encoders["torch"].embed(texts), y, seed=0)
    thresholds = validate(y, oof, target_fpr=0.001, max_spam_missed=0.5).thresholds
    verdicts = {backend: [thresholds.verdict(p) for p in
                          probe.predict_proba(encoder.embed(texts))]
                for backend, encoder in encoders.items()}
    assert verdicts["onnx"] == verdicts["torch"]
    assert verdicts["onnx-int8"] == verdicts["torch"]
    assert set(verdicts["torch"]) >= {"spam", "ham"}


def test_the_export_is_made_once_and_reused(encoders):
    cache = encoders["onnx"].config.cache_dir
    files = sorted(cache.rglob("*.onnx"))
    assert [f.name for f in files] == ["model-int8.onnx", "model.onnx"]
    modified = [f.stat().st_mtime_ns for f in files]
    Encoder(EncoderConfig(backend="onnx-int8", cache_dir=cache))
    assert [f.stat().st_mtime_ns for f in files] == modified
    assert not list(cache.rglob("*.part"))


def test_a_backend_is_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        EncoderConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="needs a cache_dir"):
        EncoderConfig(backend="onnx")


def test_loading_the_encoder_draws_no_progress_bar(capfd):
    """A bar on stderr lands in worker logs and in `spamsift classify --json`'s output."""
    Encoder(EncoderConfig(max_length=32))
    assert "Loading weights" not in capfd.readouterr().err
