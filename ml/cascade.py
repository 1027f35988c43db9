"""A two-stage cascade: a cheap model decides the mail it is sure of, a strong model the rest.

The cheap model is sure of an email when its p_spam is below ``low`` (clearly ham) or at or
above ``high`` (clearly spam); there its p is final and the strong model never runs. Between
the two, the strong model's p is final. One set of verdict thresholds is then chosen on the
combined scores.

``low`` and ``high`` are chosen on out-of-fold scores of the training set, never on test
data: among the pairs whose combined F1 at the target false-positive rate stays within a
tolerance of the strong model alone, the one where the cheap model decides the most mail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.metrics import confusion
from ml.thresholds import Thresholds, choose_thresholds

# A "high" no probability reaches (p can be exactly 1.0), and finite, so plans stay JSON.
NEVER = float(np.nextafter(1.0, 2.0))
GRID_POINTS = 51  # quantiles of the cheap scores tried for each of low and high


def cheap_decides(cheap_p: np.ndarray, low: float, high: float) -> np.ndarray:
    """Where the cheap model is sure: a boolean mask over the emails."""
    cheap_p = np.asarray(cheap_p, dtype=float)
    return (cheap_p < low) | (cheap_p >= high)


def combine(cheap_p: np.ndarray, strong_p: np.ndarray, low: float, high: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """The final p_spam and the mask of emails the cheap stage decided.

    ``strong_p`` is read only where the cheap model is not sure, so a server may leave it NaN
    for the emails it never sent to the strong model.
    """
    sure = cheap_decides(cheap_p, low, high)
    return np.where(sure, cheap_p, np.asarray(strong_p, dtype=float)), sure


@dataclass(frozen=True)
class CascadePlan:
    low: float  # cheap p below this: the cheap model's p is final (ham side)
    high: float  # cheap p at or above this: the cheap model's p is final (spam side)
    thresholds: Thresholds  # verdict thresholds for the combined p
    cheap_share: float  # out-of-fold share of emails the cheap stage decided
    f1: float  # out-of-fold F1 of the cascade at thresholds.spam
    fpr: float  # out-of-fold ham false-positive rate of the cascade at thresholds.spam
    strong_f1: float  # out-of-fold F1 of the strong model alone at its own spam threshold

    def cheap_decides(self, cheap_p: np.ndarray) -> np.ndarray:
        return cheap_decides(cheap_p, self.low, self.high)

    def combine(self, cheap_p: np.ndarray, strong_p: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        return combine(cheap_p, strong_p, self.low, self.high)

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "thresholds": self.thresholds.to_dict(),
                "cheap_share": self.cheap_share, "f1": self.f1, "fpr": self.fpr,
                "strong_f1": self.strong_f1}

    @classmethod
    def from_dict(cls, data: dict) -> CascadePlan:
        return cls(thresholds=Thresholds.from_dict(data["thresholds"]),
                   **{k: float(data[k]) for k in ("low", "high", "cheap_share", "f1", "fpr",
                                                  "strong_f1")})


def _f1_and_fpr(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """From the confusion counts, not binary_metrics: this runs for every pair of the grid
    and ROC-AUC would dominate its time."""
    counts = confusion(y, p, threshold)
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    return (2 * tp / (2 * tp + fp + fn) if tp else 0.0), (fp / (fp + tn) if fp + tn else 0.0)


def _evaluate(y: np.ndarray, cheap_p: np.ndarray, strong_p: np.ndarray, low: float,
              high: float, target_fpr: float, max_spam_missed: float, strong_f1: float
              ) -> CascadePlan:
    p, sure = combine(cheap_p, strong_p, low, high)
    thresholds = choose_thresholds(y, p, target_fpr, max_spam_missed)
    f1, fpr = _f1_and_fpr(y, p, thresholds.spam)
    return CascadePlan(low=float(low), high=float(high), thresholds=thresholds,
                       cheap_share=float(sure.mean()), f1=f1, fpr=fpr, strong_f1=strong_f1)


def choose_cascade(y: np.ndarray, cheap_oof: np.ndarray, strong_oof: np.ndarray,
                   target_fpr: float, max_spam_missed: float, tolerance: float = 0.002,
                   grid_points: int = GRID_POINTS) -> CascadePlan:
    """The plan where the cheap model decides the largest share of the out-of-fold emails
    while the cascade keeps F1 >= the strong model's F1 - ``tolerance`` and meets the FPR
    target. Falls back to sending everything to the strong model (low=0, high>1)."""
    y = np.asarray(y, dtype=bool)
    cheap_oof = np.asarray(cheap_oof, dtype=float)
    strong_oof = np.asarray(strong_oof, dtype=float)
    strong_thresholds = choose_thresholds(y, strong_oof, target_fpr, max_spam_missed)
    strong_f1, _ = _f1_and_fpr(y, strong_oof, strong_thresholds.spam)
    best = _evaluate(y, cheap_oof, strong_oof, 0.0, NEVER, target_fpr, max_spam_missed,
                     strong_f1)
    cuts = np.unique(np.quantile(cheap_oof, np.linspace(0.0, 1.0, grid_points)))
    lows = np.concatenate([[0.0], cuts])
    highs = np.concatenate([cuts, [NEVER]])
    for low in lows:
        for high in highs[highs >= low]:
            share = float(cheap_decides(cheap_oof, low, high).mean())
            if share < best.cheap_share:
                continue
            plan = _evaluate(y, cheap_oof, strong_oof, low, high, target_fpr,
                             max_spam_missed, strong_f1)
            if plan.f1 < strong_f1 - tolerance or plan.fpr > target_fpr:
                continue
            if (plan.cheap_share, plan.f1) > (best.cheap_share, best.f1):
                best = plan
    return best
