"""Verdict thresholds chosen on validation scores.

``spam`` at or above the spam threshold, ``ham`` below the ham threshold, ``unsure`` between.
The spam threshold is the lowest that keeps the ham false-positive rate at or under the
target (default 0.1 %); the ham threshold the highest that lets at most ``max_spam_missed``
of spam through as ham. Where the two cross, there is no unsure band.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    spam: float
    ham: float
    target_fpr: float
    max_spam_missed: float

    def verdict(self, p_spam: float) -> str:
        if p_spam >= self.spam:
            return "spam"
        if p_spam < self.ham:
            return "ham"
        return "unsure"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        return cls(**{k: float(data[k]) for k in ("spam", "ham", "target_fpr",
                                                  "max_spam_missed")})


def choose_thresholds(y_true: np.ndarray, p_spam: np.ndarray, target_fpr: float = 0.001,
                      max_spam_missed: float = 0.05) -> Thresholds:
    y_true = np.asarray(y_true, dtype=bool)
    p_spam = np.asarray(p_spam, dtype=float)
    ham_scores = np.sort(p_spam[~y_true])
    spam_scores = np.sort(p_spam[y_true])
    if len(ham_scores) == 0 or len(spam_scores) == 0:
        return Thresholds(0.5, 0.5, target_fpr, max_spam_missed)
    # Lowest threshold whose false positives stay within the budget of allowed hams.
    allowed = int(np.floor(target_fpr * len(ham_scores)))
    boundary = ham_scores[len(ham_scores) - 1 - allowed]  # hams above this are allowed
    spam_threshold = float(np.nextafter(boundary, np.inf))
    # Highest threshold below which at most max_spam_missed of spam falls.
    missed = int(np.floor(max_spam_missed * len(spam_scores)))
    ham_threshold = float(spam_scores[missed]) if missed < len(spam_scores) else spam_threshold
    ham_threshold = min(ham_threshold, spam_threshold)
    return Thresholds(spam_threshold, ham_threshold, target_fpr, max_spam_missed)
