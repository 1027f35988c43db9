"""ml.cascade: combining two models' scores and choosing where the cheap one decides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.cascade import NEVER, CascadePlan, choose_cascade, combine
from ml.metrics import binary_metrics

TARGET_FPR = 0.001
MISSED = 0.05


def synthetic(seed: int = 0, hams: int = 3000, spams: int = 800):
    """Labels and a good-but-imperfect strong model's out-of-fold scores."""
    rng = np.random.default_rng(seed)
    y = np.array([0] * hams + [1] * spams)
    strong = np.concatenate([rng.beta(2, 12, hams), rng.beta(9, 2, spams)])
    return rng, y, strong


def cascade_f1(plan: CascadePlan, y, cheap, strong) -> dict:
    p, _ = plan.combine(cheap, strong)
    return binary_metrics(y, p, plan.thresholds.spam)


def test_combine_takes_the_cheap_score_where_it_is_sure():
    cheap = np.array([0.01, 0.5, 0.95, 0.2])
    strong = np.array([np.nan, 0.7, np.nan, 0.1])  # never computed where cheap is sure
    p, sure = combine(cheap, strong, low=0.1, high=0.9)
    assert sure.tolist() == [True, False, True, False]
    assert p.tolist() == [0.01, 0.7, 0.95, 0.1]
    p, sure = combine(cheap, strong, low=0.0, high=NEVER)
    assert not sure[[1, 3]].any() and np.isnan(p[[0, 2]]).all()


def test_a_perfect_cheap_model_decides_everything():
    rng, y, strong = synthetic()
    cheap = np.where(y == 1, rng.uniform(0.8, 1.0, len(y)), rng.uniform(0.0, 0.2, len(y)))
    plan = choose_cascade(y, cheap, strong, TARGET_FPR, MISSED)
    assert plan.cheap_share == 1.0
    assert plan.f1 > plan.strong_f1
    # choose_thresholds spends the allowed 0.1 % of hams as false positives; no spam is missed.
    assert cascade_f1(plan, y, cheap, strong)["recall"] == 1.0


def test_a_useless_cheap_model_decides_almost_nothing():
    rng, y, strong = synthetic()
    cheap = rng.uniform(0.0, 1.0, len(y))  # independent of the label
    plan = choose_cascade(y, cheap, strong, TARGET_FPR, MISSED)
    assert plan.cheap_share < 0.005
    assert plan.f1 >= plan.strong_f1 - 0.002


def test_no_qualifying_pair_sends_everything_to_the_strong_model():
    rng, y, strong = synthetic()
    cheap = 1.0 - strong  # confidently wrong everywhere
    # No tolerance and no false positive allowed: every email the cheap model decides costs F1.
    plan = choose_cascade(y, cheap, strong, target_fpr=0.0, max_spam_missed=MISSED,
                          tolerance=0.0)
    assert (plan.low, plan.high, plan.cheap_share) == (0.0, NEVER, 0.0)
    assert plan.f1 == plan.strong_f1
    assert not plan.cheap_decides(np.array([0.0, 0.5, 1.0])).any()


def test_tolerance_is_respected_and_buys_share():
    rng, y, strong = synthetic(seed=1)
    # A decent cheap model: right and confident on most mail, noisy on the rest.
    cheap = np.clip(np.where(y == 1, rng.beta(6, 2, len(y)), rng.beta(2, 6, len(y))), 0, 1)
    shares = []
    for tolerance in (0.0, 0.002, 0.05):
        plan = choose_cascade(y, cheap, strong, TARGET_FPR, MISSED, tolerance=tolerance)
        recomputed = cascade_f1(plan, y, cheap, strong)
        assert recomputed["f1"] == pytest.approx(plan.f1)
        assert plan.f1 >= plan.strong_f1 - tolerance
        shares.append(plan.cheap_share)
    assert shares == sorted(shares)
    assert shares[-1] > shares[0]


def test_the_false_positive_target_is_respected():
    rng, y, strong = synthetic(seed=2)
    cheap = np.where(y == 1, rng.uniform(0.7, 1.0, len(y)), rng.uniform(0.0, 0.3, len(y)))
    cheap[:30] = 0.999  # hams the cheap model is confidently wrong about
    for tolerance in (0.002, 1.0):  # 1.0: any F1 goes, the FPR target still holds
        plan = choose_cascade(y, cheap, strong, TARGET_FPR, MISSED, tolerance=tolerance)
        figures = cascade_f1(plan, y, cheap, strong)
        assert figures["fpr"] <= TARGET_FPR and figures["fpr"] == pytest.approx(plan.fpr)
        assert plan.cheap_share > 0.5


def test_plan_round_trips_through_json():
    rng, y, strong = synthetic()
    cheap = np.where(y == 1, rng.beta(8, 2, len(y)), rng.beta(2, 8, len(y)))
    plan = choose_cascade(y, cheap, strong, TARGET_FPR, MISSED)
    assert CascadePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan

