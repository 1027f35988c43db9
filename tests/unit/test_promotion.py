import numpy as np

from ml.promotion import compare

Y = np.array([0] * 50 + [1] * 50)
GOOD = np.where(Y == 1, 0.9, 0.1)


def test_an_equal_or_better_model_is_accepted():
    assert compare(Y, GOOD, 0.5, GOOD, 0.5, tolerance=0.01).accepted
    worse = GOOD.copy()
    worse[50:55] = 0.2  # five spams missed
    assert compare(Y, GOOD, 0.5, worse, 0.5, tolerance=0.01).accepted


def test_a_model_trained_on_flipped_labels_is_refused():
    result = compare(Y, 1 - GOOD, 0.5, GOOD, 0.5, tolerance=0.01)
    assert not result.accepted and "F1" in result.reason
    assert result.candidate["f1"] == 0.0 and result.active["f1"] == 1.0


def test_a_small_f1_loss_within_the_tolerance_passes_but_not_a_larger_one():
    worse = GOOD.copy()
    worse[50] = 0.2  # one spam missed: F1 0.99
    assert compare(Y, worse, 0.5, GOOD, 0.5, tolerance=0.011).accepted
    worse[50:55] = 0.2
    assert not compare(Y, worse, 0.5, GOOD, 0.5, tolerance=0.011).accepted


def test_more_false_positives_than_one_ham_are_refused_even_with_a_better_f1():
    active = GOOD.copy()
    active[50:60] = 0.2  # ten spams missed, no false positive
    candidate = GOOD.copy()
    candidate[:2] = 0.9  # every spam caught, two hams called spam
    result = compare(Y, candidate, 0.5, active, 0.5, tolerance=0.01)
    assert not result.accepted and "false-positive" in result.reason
    candidate[1] = 0.1  # one ham: allowed
    assert compare(Y, candidate, 0.5, active, 0.5, tolerance=0.01).accepted
