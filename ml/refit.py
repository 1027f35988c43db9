"""Thresholds that hold on a deployment's own mail, and whether its mail has drifted.

Thresholds chosen for a 0.1 % false-positive rate on one corpus gave 1-8 % on another
organisation's mail in our measurements. So they are re-fitted on the deployment's mail:

- before any label, from the unlabeled score distribution: two normal components over the
  scores' log-odds, the hams' and the spams' (a Gaussian mixture), and the spam threshold
  where the hams' component leaves the target share above it. Scores are not calibrated
  enough in the tail on mail unlike the training mail to count each email's 1 - p as
  expected ham (measured: that made thresholds stricter on mail where they should fall, and
  looser where they should rise; ``BENCHMARKS.md``). Where the two components are not
  clearly apart, the unlabeled mail says nothing about the threshold and is not used;
- once enough hams are labeled (mail the model never trained on), from those labels too:
  the stricter of the two spam thresholds is kept.

The false-positive rate is estimated on the labeled hams with an exact (Clopper-Pearson)
interval, and from the mixture on unlabeled mail with a bootstrap interval (which holds only
as far as the hams' log-odds form one normal group). Drift: the population stability index
between the score distribution the thresholds were chosen on and that of recent mail, over
fixed log-odds bins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta, norm

from ml.odds import log_odds, sigmoid
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


# Ashman's D between the two components below which they are not clearly apart (a common
# criterion for a mixture of two normals to be cleanly bimodal).
MIN_SEPARATION = 2.0
# How near 0 a score's log-odds go here: the default stop of ``log_odds`` (±20.7) would pile
# the surest scores into spikes that pull the components.
FULL_RANGE = 1e-300


@dataclass(frozen=True)
class ScoreMixture:
    """Two normal components over the log-odds of unlabeled mail: the hams' and the spams'."""

    ham_mean: float
    ham_sd: float
    spam_mean: float
    spam_sd: float
    spam_share: float

    @property
    def separation(self) -> float:
        """Ashman's D: the distance between the means in pooled standard deviations."""
        return abs(self.spam_mean - self.ham_mean) / np.sqrt(
            (self.ham_sd ** 2 + self.spam_sd ** 2) / 2)

    @property
    def apart(self) -> bool:
        return self.spam_mean > self.ham_mean and self.separation >= MIN_SEPARATION

    def ham_z(self, threshold: float) -> float:
        """How many of the hams' standard deviations ``threshold`` lies above their mean."""
        return float((log_odds(np.array([threshold]), FULL_RANGE)[0] - self.ham_mean)
                     / self.ham_sd)

    def expected_fpr(self, threshold: float) -> float:
        """The share of the hams' component at or above ``threshold``."""
        return float(norm.sf(self.ham_z(threshold)))

    def thresholds(self, target_fpr: float, max_spam_missed: float) -> Thresholds:
        """The spam threshold that leaves ``target_fpr`` of the hams' component above it;
        the ham threshold that leaves ``max_spam_missed`` of the spams' below it."""
        spam = float(sigmoid(self.ham_mean + norm.isf(target_fpr) * self.ham_sd))
        ham = float(sigmoid(self.spam_mean + norm.ppf(max_spam_missed) * self.spam_sd))
        return Thresholds(spam, min(ham, spam), target_fpr, max_spam_missed)


# At most this many scores are fitted (a seeded draw of them): more barely move the fit,
# and its cost grows with them (the Models page fits on every view).
MIXTURE_SAMPLE = 20_000


def _mixture_log_odds(p_unlabeled: np.ndarray) -> np.ndarray:
    """The log-odds the mixture is fitted to, sorted: the same mail in any order gives the
    same fit."""
    z = np.sort(log_odds(p_unlabeled, FULL_RANGE))
    if len(z) > MIXTURE_SAMPLE:
        z = np.sort(np.random.default_rng(0).choice(z, MIXTURE_SAMPLE, replace=False))
    return z


def score_mixture(p_unlabeled: np.ndarray) -> ScoreMixture:
    """The two-component mixture fitted to the log-odds of ``p_unlabeled``."""
    return _fit_mixture(_mixture_log_odds(p_unlabeled))


def _fit_mixture(z: np.ndarray, start: ScoreMixture | None = None) -> ScoreMixture:
    """The mixture fitted to log-odds ``z``: from three random starts, or from ``start``."""
    from sklearn.mixture import GaussianMixture  # here: the web app imports this module

    # EM's default tolerance stops it early: on the simulated deployment's mail the other
    # way round it stopped after 4 steps, at a spam share of 0.24 (converged: 0.13; the
    # truth: 0.15); resamples' fits, started near the whole mail's optimum, stopped before
    # moving, and intervals came out too narrow (15 of 20 held the true rate; 57 of 60 now).
    settings = {"random_state": 0, "tol": 1e-6, "max_iter": 500}
    if start is None:
        mixture = GaussianMixture(2, n_init=3, **settings)
    else:
        mixture = GaussianMixture(
            2, **settings, weights_init=[1 - start.spam_share, start.spam_share],
            means_init=[[start.ham_mean], [start.spam_mean]],
            precisions_init=[[[start.ham_sd ** -2]], [[start.spam_sd ** -2]]])
    fit = mixture.fit(z.reshape(-1, 1))
    means, sds = fit.means_.ravel(), np.sqrt(fit.covariances_.ravel())
    ham, spam = np.argsort(means)
    return ScoreMixture(float(means[ham]), float(sds[ham]), float(means[spam]),
                        float(sds[spam]), float(fit.weights_[spam]))


@dataclass(frozen=True)
class ExpectedFpr:
    """The false-positive rate the hams' group of the mixture expects at a threshold, and
    its 95 % bootstrap interval: how far the estimate moves with the sample of mail it was
    read from. Both assume that the hams' log-odds form one normal group."""

    fpr: float
    low: float
    high: float
    emails: int

    def to_dict(self) -> dict:
        return asdict(self)


# Resampled fits behind the interval, and at most this many scores in each (the time a
# page view takes: BENCHMARKS.md, issue 12).
BOOTSTRAP_FITS = 100
BOOTSTRAP_SAMPLE = 2_000


def expected_fpr(p_unlabeled: np.ndarray, threshold: float, mixture: ScoreMixture,
                 confidence: float = 0.95, fits: int = BOOTSTRAP_FITS,
                 sample: int = BOOTSTRAP_SAMPLE, seed: int = 0) -> ExpectedFpr:
    """``mixture``'s false-positive rate at ``threshold`` with its bootstrap interval.

    Each resample refits the mixture from ``mixture``'s parameters. With more than
    ``sample`` scores, resamples of ``sample`` scores stand in for the whole (an m-out-of-n
    bootstrap): their spread, in the hams' standard deviations, shrinks by the square root of
    ``sample`` over the number of scores fitted."""
    z = _mixture_log_odds(p_unlabeled)
    size = min(len(z), sample)
    rng = np.random.default_rng(seed)
    centre = mixture.ham_z(threshold)
    moved = np.array([_fit_mixture(rng.choice(z, size), mixture).ham_z(threshold) - centre
                      for _ in range(fits)]) * np.sqrt(size / len(z))
    tail = (1 - confidence) / 2
    low_z, high_z = centre + np.quantile(moved, [tail, 1 - tail])
    return ExpectedFpr(mixture.expected_fpr(threshold), float(norm.sf(high_z)),
                       float(norm.sf(low_z)), len(p_unlabeled))


def unlabeled_thresholds(p_unlabeled: np.ndarray, target_fpr: float,
                         max_spam_missed: float) -> Thresholds | None:
    """Thresholds expected to meet the targets on this mail, or None where its scores do not
    fall into two groups clearly apart."""
    mixture = score_mixture(p_unlabeled)
    return mixture.thresholds(target_fpr, max_spam_missed) if mixture.apart else None


def refit_thresholds(p_unlabeled: np.ndarray, y_labeled: np.ndarray, p_labeled: np.ndarray,
                     target_fpr: float, max_spam_missed: float, min_hams: int
                     ) -> tuple[Thresholds, str]:
    """New thresholds and how they were found (see the module's docstring). Raises
    ValueError where neither the unlabeled mail nor the labels can tell."""
    fitted = unlabeled_thresholds(p_unlabeled, target_fpr, max_spam_missed)
    unlabeled = f"unlabeled score distribution ({len(p_unlabeled)} emails)"
    not_apart = (f"the scores of {len(p_unlabeled)} unlabeled emails do not fall into two "
                 "groups clearly apart (ham and spam)")
    y = np.asarray(y_labeled, dtype=bool)
    hams, spams = int((~y).sum()), int(y.sum())
    if hams < min_hams or not spams:
        if fitted is None:
            raise ValueError(f"{not_apart}, and a re-fit from labels needs {min_hams} labeled "
                             f"hams and a spam the model never trained on ({hams} and {spams})")
        return fitted, unlabeled
    labeled = choose_thresholds(y, p_labeled, target_fpr, max_spam_missed)
    how = f"labels ({hams} hams, {spams} spams)"
    if fitted is None:
        return labeled, f"{how}; {not_apart}"
    spam = max(fitted.spam, labeled.spam)
    ham = min(max(fitted.ham, labeled.ham), spam)
    return (Thresholds(spam, ham, target_fpr, max_spam_missed),
            f"{unlabeled} and {how}: the stricter")


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
