import numpy as np
import pytest

from ml.refit import (expected_fpr, fpr_estimate, population_stability, refit_thresholds,
                      score_histogram, unlabeled_thresholds)


def calibrated_mail(n: int, spam_share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are calibrated by construction: each label drawn with probability p."""
    rng = np.random.default_rng(seed)
    z = np.where(rng.random(n) < spam_share, rng.normal(4, 2, n), rng.normal(-4, 2, n))
    p = 1 / (1 + np.exp(-z))
    return p, (rng.random(n) < p).astype(int)


def test_the_fpr_interval_is_exact_and_narrows_with_more_hams():
    few = fpr_estimate(np.array([0.1] * 99 + [0.9]), 0.5)
    many = fpr_estimate(np.array([0.1] * 9_900 + [0.9] * 100), 0.5)
    assert few.fpr == many.fpr == pytest.approx(0.01)
    assert few.low < many.low < 0.01 < many.high < few.high
    none = fpr_estimate(np.array([0.1] * 300), 0.5)
    assert none.fpr == 0 and none.low == 0 and none.high == pytest.approx(0.0122, abs=1e-3)
    assert fpr_estimate(np.array([]), 0.5) is None


def test_unlabeled_thresholds_meet_the_target_on_calibrated_mail():
    p, y = calibrated_mail(40_000, 0.3)
    fitted = unlabeled_thresholds(p, 0.01, 0.05)
    assert expected_fpr(p, fitted.spam) <= 0.01
    true_fpr = np.mean(p[y == 0] >= fitted.spam)
    assert true_fpr == pytest.approx(0.01, abs=0.003)
    assert np.mean(p[y == 1] < fitted.ham) == pytest.approx(0.05, abs=0.01)
    assert fitted.ham <= fitted.spam


def test_labels_make_the_thresholds_stricter_never_looser():
    p, y = calibrated_mail(5_000, 0.3)
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
    p, _ = calibrated_mail(20_000, 0.3, seed=1)
    reference = score_histogram(p[:10_000])
    assert sum(reference) == 10_000
    assert population_stability(reference, p[10_000:]) < 0.01
    other, _ = calibrated_mail(10_000, 0.8, seed=2)
    assert population_stability(reference, other) > 0.25
