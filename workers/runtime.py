"""What a worker process loads once and keeps: the encoder and the active classifier."""

from __future__ import annotations

from functools import lru_cache

from core.config import get_settings
from core.models import TrainedModel
from ml.classifiers import load_classifier
from ml.encoder import Encoder, EncoderConfig


def encoder_config() -> EncoderConfig:
    settings = get_settings()
    return EncoderConfig(package=settings.encoder_package, pooling=settings.encoder_pooling,
                         max_length=settings.encoder_max_length,
                         batch_size=settings.embed_batch_size, threads=settings.torch_threads,
                         chunk_overlap=settings.chunk_overlap, max_chunks=settings.max_chunks)


@lru_cache(maxsize=1)
def get_encoder() -> Encoder:
    """Loaded on first use in each worker process, never at import."""
    return Encoder(encoder_config())


_loaded: dict[int, object] = {}


def classifier_for(model: TrainedModel):
    """The loaded classifier of a registry row, cached by model id (rows never change)."""
    if model.id not in _loaded:
        if len(_loaded) >= 4:
            _loaded.pop(next(iter(_loaded)))
        _loaded[model.id] = load_classifier(model.kind, model.artifact, model.artifact_blob)
    return _loaded[model.id]
