import numpy as np
import pytest

from scipy.stats import norm

from ml.refit import (expected_fpr, fpr_estimate, population_stability, refit_thresholds,
                      score_histogram, score_mixture, unlabeled_thresholds)
from ml.thresholds import choose_thresholds


def two_groups(n: int, spam_share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of hams and spams, each group normal in log-odds, as a classifier gives them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < spam_share).astype(int)
    z = np.where(y == 1, rng.normal(4, 2, n), rng.normal(-4, 2, n))
    return 1 / (1 + np.exp(-z)), y


def test_the_fpr_interval_is_exact_and_narrows_with_more_hams():
    few = fpr_estimate(np.array([0.1] * 99 + [0.9]), 0.5)
    many = fpr_estimate(np.array([0.1] * 9_900 + [0.9] * 100), 0.5)
    assert few.fpr == many.fpr == pytest.approx(0.01)
    assert few.low < many.low < 0.01 < many.high < few.high
    none = fpr_estimate(np.array([0.1] * 300), 0.5)
    assert none.fpr == 0 and none.low == 0 and none.high == pytest.approx(0.0122, abs=1e-3)
    assert fpr_estimate(np.array([]), 0.5) is None


@pytest.mark.parametrize("confidence", [1, 2, 4])
def test_unlabeled_thresholds_meet_the_target_however_calibrated_the_scores_are(confidence):
    """Log-odds times 2 are calibrated here (two normals 8 apart, sd 2); times 1 too timid,
    times 4 too sure, as scores are on mail unlike the training mail. The threshold leaves
    the target share of hams above it all the same."""
    timid, y = two_groups(40_000, 0.3)
    p = 1 / (1 + (1 / timid - 1) ** confidence)
    fitted = unlabeled_thresholds(p, 0.01, 0.05)
    assert np.mean(p[y == 0] >= fitted.spam) == pytest.approx(0.01, abs=0.003)
    assert np.mean(p[y == 1] < fitted.ham) == pytest.approx(0.05, abs=0.01)
    assert fitted.ham <= fitted.spam
    assert score_mixture(p).expected_fpr(fitted.spam) == pytest.approx(0.01)


def hams_above(threshold: float) -> float:
    """The true false-positive rate of ``two_groups``' hams (log-odds normal, -4 ± 2)."""
    return float(norm.sf((np.log(threshold / (1 - threshold)) + 4) / 2))


def test_the_expected_fpr_interval_holds_the_true_rate_and_narrows_with_more_mail():
    estimates = [expected_fpr(p, 0.5, score_mixture(p), fits=40)
                 for p, _ in (two_groups(1_000, 0.4, seed=seed) for seed in range(20))]
    for estimate in estimates:
        assert estimate.low < estimate.fpr < estimate.high and estimate.emails == 1_000
    covered = sum(e.low <= hams_above(0.5) <= e.high for e in estimates)
    assert covered >= 16  # a 95 % interval: 19 of 20 on average
    p, _ = two_groups(20_000, 0.4, seed=99)
    many = expected_fpr(p, 0.5, score_mixture(p), fits=40)
    assert many.low <= hams_above(0.5) <= many.high
    assert many.high - many.low < (estimates[0].high - estimates[0].low) / 2


def test_resamples_smaller_than_the_mail_give_about_the_same_interval():
    """The m-out-of-n bootstrap: 2,000-score resamples of 20,000 scores, rescaled, give the
    width that resampling all 20,000 gives."""
    p, _ = two_groups(20_000, 0.4, seed=7)
    mixture = score_mixture(p)
    whole = expected_fpr(p, 0.5, mixture, fits=40, sample=20_000)
    part = expected_fpr(p, 0.5, mixture, fits=40, sample=2_000)
    assert part.fpr == whole.fpr
    assert expected_fpr(p[::-1], 0.5, mixture, fits=40, sample=2_000) == part  # any order
    assert (part.high - part.low) == pytest.approx(whole.high - whole.low, rel=0.4)


def test_mail_of_one_group_gives_no_unlabeled_thresholds():
    rng = np.random.default_rng(4)
    only_ham = 1 / (1 + np.exp(-rng.normal(-4, 2, 5_000)))
    assert not score_mixture(only_ham).apart
    assert unlabeled_thresholds(only_ham, 0.01, 0.05) is None
    with pytest.raises(ValueError, match="do not fall into two groups"):
        refit_thresholds(only_ham, np.array([0]), np.array([0.1]), 0.01, 0.05, min_hams=50)
    y = np.r_[np.zeros(100, int), np.ones(10, int)]
    scores = np.r_[np.linspace(0.01, 0.6, 100), np.full(10, 0.99)]
    thresholds, how = refit_thresholds(only_ham, y, scores, 0.01, 0.05, min_hams=50)
    assert thresholds == choose_thresholds(y, scores, 0.01, 0.05)
    assert how.startswith("labels (100 hams, 10 spams)")


def test_labels_make_the_thresholds_stricter_never_looser():
    p, y = two_groups(5_000, 0.3)
    unlabeled = refit_thresholds(p, y[:0], p[:0], 0.01, 0.05, min_hams=50)[0]
    harsh = p.copy()
    harsh[:200][y[:200] == 0] = 0.999  # the labeled hams score high here
    both, how = refit_thresholds(p, y[:200], harsh[:200], 0.01, 0.05, min_hams=50)
    assert both.spam > unlabeled.spam and "labels" in how
    gentle = np.where(y[:200] == 1, 0.999, 0.001)
    assert refit_thresholds(p, y[:200], gentle, 0.01, 0.05, 50)[0].spam == unlabeled.spam
    few, how = refit_thresholds(p, y[:20], harsh[:20], 0.01, 0.05, min_hams=50)
    assert few.spam == unlabeled.spam and "labels" not in how


def test_drift_is_small_for_the_same_mail_and_large_for_other_mail():
    p, _ = two_groups(20_000, 0.3, seed=1)
    reference = score_histogram(p[:10_000])
    assert sum(reference) == 10_000
    assert population_stability(reference, p[10_000:]) < 0.01
    other, _ = two_groups(10_000, 0.8, seed=2)
    assert population_stability(reference, other) > 0.25
