"""Thresholds that hold on a deployment's own mail, and whether its mail has drifted.

Thresholds chosen for a 0.1 % false-positive rate on one corpus gave 1-8 % on another
organisation's mail in our measurements. So they are re-fitted on the deployment's mail:

- before any label, from the unlabeled score distribution: with calibrated scores, a
  threshold t is expected to call spam the hams' share sum(1 - p | p >= t) / sum(1 - p);
- once enough hams are labeled (mail the model never trained on), from those labels too:
  the stricter of the two spam thresholds is kept.

The false-positive rate is estimated on the labeled hams with an exact (Clopper-Pearson)
interval. Drift: the population stability index between the score distribution the
thresholds were chosen on and that of recent mail, over fixed log-odds bins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta

from ml.active import log_odds
from ml.thresholds import Thresholds, choose_thresholds

# Log-odds bin edges for score histograms (drift): ten bins, open at both ends.
BIN_EDGES = np.array([-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0])


@dataclass(frozen=True)
class FprEstimate:
    fpr: float
    low: float
    high: float  # the 95 % interval
    false_positives: int
    hams: int

    def to_dict(self) -> dict:
        return asdict(self)


def fpr_estimate(p_ham: np.ndarray, threshold: float, confidence: float = 0.95
                 ) -> FprEstimate | None:
    """The false-positive rate of ``threshold`` on labeled hams, with its interval."""
    hams = len(p_ham)
    if not hams:
        return None
    false_positives = int(np.sum(np.asarray(p_ham) >= threshold))
    tail = (1 - confidence) / 2
    low = beta.ppf(tail, false_positives, hams - false_positives + 1) if false_positives else 0.0
    high = (beta.ppf(1 - tail, false_positives + 1, hams - false_positives)
            if false_positives < hams else 1.0)
    return FprEstimate(false_positives / hams, float(low), float(high), false_positives, hams)


def expected_fpr(p_unlabeled: np.ndarray, threshold: float) -> float:
    """The false-positive rate calibrated scores expect of ``threshold`` on this mail."""
    p = np.asarray(p_unlabeled, dtype=float)
    ham_weight = 1 - p
    total = ham_weight.sum()
    return float(ham_weight[p >= threshold].sum() / total) if total > 0 else 0.0


def unlabeled_thresholds(p_unlabeled: np.ndarray, target_fpr: float,
                         max_spam_missed: float) -> Thresholds:
    """Thresholds expected to meet the targets on this mail: the lowest spam threshold whose
    expected false-positive rate is within the target, the highest ham threshold whose
    expected share of spam let through is within ``max_spam_missed``."""
    p = np.sort(np.asarray(p_unlabeled, dtype=float))
    ham_above = np.cumsum((1 - p)[::-1])[::-1]  # expected hams at or above each score
    within = ham_above / ham_above[0] <= target_fpr
    spam = float(p[np.argmax(within)]) if within.any() else float(np.nextafter(p[-1], np.inf))
    spam_below = np.cumsum(p) - p  # expected spam strictly below each score
    missed = spam_below / max(p.sum(), 1e-12) <= max_spam_missed
    ham = float(p[np.flatnonzero(missed)[-1]]) if missed.any() else 0.0
    return Thresholds(spam, min(ham, spam), target_fpr, max_spam_missed)


def refit_thresholds(p_unlabeled: np.ndarray, y_labeled: np.ndarray, p_labeled: np.ndarray,
                     target_fpr: float, max_spam_missed: float, min_hams: int
                     ) -> tuple[Thresholds, str]:
    """New thresholds and how they were found (see the module's docstring)."""
    fitted = unlabeled_thresholds(p_unlabeled, target_fpr, max_spam_missed)
    y = np.asarray(y_labeled, dtype=bool)
    hams, spams = int((~y).sum()), int(y.sum())
    if hams < min_hams or not spams:
        return fitted, f"unlabeled score distribution ({len(p_unlabeled)} emails)"
    labeled = choose_thresholds(y, p_labeled, target_fpr, max_spam_missed)
    spam = max(fitted.spam, labeled.spam)
    ham = min(max(fitted.ham, labeled.ham), spam)
    return (Thresholds(spam, ham, target_fpr, max_spam_missed),
            f"unlabeled score distribution ({len(p_unlabeled)} emails) and labels "
            f"({hams} hams, {spams} spams): the stricter")


def score_histogram(p_spam: np.ndarray) -> list[int]:
    """Counts of scores in the log-odds bins (a reference for drift)."""
    bins = np.searchsorted(BIN_EDGES, log_odds(p_spam), side="right")
    return np.bincount(bins, minlength=len(BIN_EDGES) + 1).tolist()


def population_stability(reference: list[int], p_recent: np.ndarray) -> float:
    """PSI between a reference histogram and recent scores (0: the same; above 0.25 is
    commonly read as a major shift)."""
    expected = np.asarray(reference, dtype=float) + 0.5
    actual = np.asarray(score_histogram(p_recent), dtype=float) + 0.5
    expected, actual = expected / expected.sum(), actual / actual.sum()
    return float(np.sum((actual - expected) * np.log(actual / expected)))
