"""What a worker process loads once and keeps: encoders and the active model's classifiers."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from functools import lru_cache

from core.config import get_settings
from core.models import TrainedModel
from ml.classifiers import CASCADE, load_classifier
from ml.encoder import Encoder, EncoderConfig, model_directory, package_version
from ml.hybrid import HYBRID
from ml.lora_settings import LORA

log = logging.getLogger(__name__)


def encoder_config(backend: str) -> EncoderConfig:
    settings = get_settings()
    return EncoderConfig(package=settings.encoder_package, pooling=settings.encoder_pooling,
                         max_length=settings.encoder_max_length,
                         batch_size=settings.embed_batch_size, threads=settings.torch_threads,
                         chunk_overlap=settings.chunk_overlap, max_chunks=settings.max_chunks,
                         backend=backend,
                         cache_dir=settings.var_dir / "onnx")


def get_encoder(backend: str | None = None, version: int | None = None) -> Encoder:
    """The encoder on ``backend`` (default: the configured one), as shipped or an adapted
    ``version``, loaded on first use in each worker process (or at its start, ``warm_up``),
    never at import."""
    return _loaded_encoder(backend or get_settings().encoder_backend, version)


@lru_cache(maxsize=3)
def _loaded_encoder(backend: str, version: int | None) -> Encoder:
    if version is None:
        return Encoder(encoder_config(backend))
    adapted, weights = adapted_encoder(version)
    return Encoder(replace(encoder_config(backend), adapted=adapted), weights)


@lru_cache(maxsize=2)
def adapted_encoder(version: int) -> tuple[str, dict]:
    """An adapted encoder version's name (``mlm.3``) and changed weights, read once."""
    from core.db import session_scope
    from core.models import EncoderVersion
    from ml.mlm import adapted_weights

    with session_scope() as session:
        row = session.get(EncoderVersion, version)
        if row is None:
            raise LookupError(f"no encoder version {version}")
        _check_base(row.base, f"encoder version {version}")
        return (row.adapted,
                adapted_weights(model_directory(get_settings().encoder_package), row.artifact,
                                row.artifact_blob))


def _check_base(base: str, what: str) -> None:
    installed = package_version(get_settings().encoder_package)
    if base != installed:
        raise ValueError(f"{what} was trained from {base}; this worker has {installed}")


_loaded: dict[tuple, object] = {}


def classifier_for(model: TrainedModel):
    """The loaded classifier of a registry row, cached (rows never change; the creation time
    tells a model from one that had its id in a database since emptied)."""
    key = (model.id, model.created_at)
    if key not in _loaded:
        if len(_loaded) >= 4:
            _loaded.pop(next(iter(_loaded)))
        serving = {}
        if model.kind == LORA:
            _check_base(model.artifact["base"], f"model {model.id}")
            serving = lora_serving(model.params.get("backend", "torch"),
                                   model.artifact.get("encoder_version"))
        _loaded[key] = load_classifier(model.kind, model.artifact, model.artifact_blob,
                                       **serving)
    return _loaded[key]


def lora_serving(backend: str, version: int | None = None) -> dict:
    """How this process serves a fine-tune: the installed encoder's weights (with an adapted
    ``version``'s over them) as its base, on ``backend``, merged ONNX models cached under the
    var directory."""
    settings = get_settings()
    return {"base_dir": model_directory(settings.encoder_package), "backend": backend,
            "cache_dir": settings.var_dir / "onnx", "threads": settings.torch_threads,
            "base_state": adapted_encoder(version)[1] if version is not None else None}


_models: dict[tuple, TrainedModel] = {}


def active_model_row(session) -> TrainedModel | None:
    """The active model, detached and cached: each task asks only which model is active (a
    tiny query), not for its artifact, which can be megabytes."""
    from sqlalchemy import select

    row = session.execute(select(TrainedModel.id, TrainedModel.created_at,
                                 TrainedModel.thresholds).where(TrainedModel.is_active)).first()
    if row is None:
        return None
    key = (row.id, row.created_at, json.dumps(row.thresholds, sort_keys=True))  # re-fits
    if key not in _models:
        model = session.get(TrainedModel, key[0])
        session.expunge(model)
        if len(_models) >= 4:
            _models.pop(next(iter(_models)))
        _models[key] = model
    return _models[key]


_stages: dict[tuple, tuple[TrainedModel, TrainedModel]] = {}
# Where a combined model's params name its stages: a cascade's cheap and strong model, a
# hybrid's text and language model.
STAGE_KEYS = {CASCADE: ("cheap_model_id", "strong_model_id"),
              HYBRID: ("text_model_id", "language_model_id")}


def stage_models(model: TrainedModel) -> tuple[TrainedModel, TrainedModel]:
    """The two stage models of a cascade or a hybrid (registry rows, cached like
    classifiers)."""
    from core.db import session_scope

    key = (model.id, model.created_at)
    if key not in _stages:
        with session_scope() as session:
            stages = tuple(session.get(TrainedModel, model.params[name])
                           for name in STAGE_KEYS[model.kind])
            for stage in stages:
                session.expunge(stage)
        if len(_stages) >= 4:
            _stages.pop(next(iter(_stages)))
        _stages[key] = stages
    return _stages[key]


def warm_up() -> None:
    """Load what the active model reads, before the first email: the classifier, and for an
    encoder model the encoder with one small batch through it (the first batch is slow)."""
    import time

    from core.db import session_scope
    from workers.pipeline import score_texts

    started = time.perf_counter()
    try:
        with session_scope() as session:
            model = active_model_row(session)
            if model is None:
                return
        score_texts(model, ["warm-up: subject and body"], reason_terms=1)
    except Exception as exc:  # a worker without a database still starts; it loads later
        log.warning("warm-up skipped: %s", exc)
        return
    backend = get_settings().encoder_backend if model.encoder else None
    log.info("warmed up in %.1f s: model %s (%s)%s", time.perf_counter() - started, model.id,
             model.kind, f", encoder backend {backend}" if backend else "")
