"""Scores as probabilities and as log-odds, one way in each direction for every module."""

from __future__ import annotations

import numpy as np


def log_odds(p: np.ndarray, floor: float = 1e-9) -> np.ndarray:
    """Log-odds of scores held at least ``floor`` away from 0 and from 1 (as near 1 as
    float64 allows at most)."""
    p = np.clip(np.asarray(p, dtype=float), floor, min(1 - floor, np.nextafter(1.0, 0.0)))
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Probability from log-odds (the inverse of ``log_odds``)."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
