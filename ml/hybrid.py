"""A hybrid of the TF-IDF model and a language model: logistic regression over the two
models' held-out scores (stacking).

Each stage is trained on its own; their out-of-fold p(spam) on the same emails become two
features, the log-odds of each, and a calibrated linear model learns how much to trust each
(its own out-of-fold scores then give the thresholds, as for every kind). Token statistics
and a language model err on different mail, so the mix can beat both.
"""

from __future__ import annotations

import numpy as np

from ml.linear import LinearProbe, train_linear_probe
from ml.odds import log_odds

HYBRID = "hybrid"
FEATURES = ("text", "language model")  # the stages, in feature order
_EDGE = 1e-6  # p is clipped away from 0 and 1 before its log-odds are taken


def stage_features(p_text: np.ndarray, p_language: np.ndarray) -> np.ndarray:
    """(n, 2) log-odds of the two stages' p(spam)."""
    return log_odds(np.column_stack([p_text, p_language]), _EDGE)


def train_hybrid(y: np.ndarray, p_text_oof: np.ndarray, p_language_oof: np.ndarray, seed: int = 0
                 ) -> tuple[LinearProbe, np.ndarray, dict]:
    """The stacker, its out-of-fold calibrated p(spam) and its params (the weight of each
    stage)."""
    stacker, oof, params = train_linear_probe(stage_features(p_text_oof, p_language_oof), y,
                                              seed=seed)
    weights = {name: round(float(w), 4) for name, w in zip(FEATURES, stacker.coef)}
    return stacker, oof, {**params, "stage_weights": weights}


def combine(stacker: LinearProbe, p_text: np.ndarray, p_language: np.ndarray) -> np.ndarray:
    return stacker.predict_proba(stage_features(p_text, p_language))
