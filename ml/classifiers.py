"""The model kinds spamsift can train and load, and what each reads (vectors or text)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.baseline import TfidfBaseline
from ml.hybrid import HYBRID
from ml.linear import LinearProbe
from ml.lora import LORA, LoraClassifier
from ml.metrics import binary_metrics, confusion, curves
from ml.thresholds import Thresholds, choose_thresholds

LINEAR = "linear"
TFIDF_NB = "tfidf-nb"
TFIDF_LR = "tfidf-lr"
CASCADE = "cascade"  # TF-IDF LR decides what it is sure of, a linear model the rest
KINDS = (LINEAR, TFIDF_NB, TFIDF_LR, CASCADE, LORA, HYBRID)
READS_TEXT = {TFIDF_NB, TFIDF_LR}


def load_classifier(kind: str, artifact: dict, blob: bytes, **serving
                    ) -> LinearProbe | TfidfBaseline | LoraClassifier:
    """``serving``: for a fine-tune, ``LoraClassifier.load``'s base_dir, backend, cache_dir,
    base_state and threads."""
    if kind in (LINEAR, HYBRID):  # a hybrid's stacker is linear in its stages' log-odds
        return LinearProbe.from_artifact(artifact, blob)
    if kind in (TFIDF_NB, TFIDF_LR):
        return TfidfBaseline.from_artifact(artifact, blob)
    if kind == LORA:
        return LoraClassifier.load(artifact=artifact, blob=blob, **serving)
    raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")


@dataclass
class Validation:
    """Thresholds and figures chosen from out-of-fold probabilities of the training set."""

    thresholds: Thresholds
    metrics: dict
    curves: dict
    confusion: dict


def validate(y: np.ndarray, oof_p_spam: np.ndarray, target_fpr: float,
             max_spam_missed: float) -> Validation:
    thresholds = choose_thresholds(y, oof_p_spam, target_fpr, max_spam_missed)
    return Validation(
        thresholds=thresholds,
        metrics=binary_metrics(y, oof_p_spam, thresholds.spam),
        curves=curves(y, oof_p_spam),
        confusion=confusion(y, oof_p_spam, thresholds.spam),
    )
