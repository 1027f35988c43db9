"""The hybrid (``ml.hybrid``): stacking two stages' held-out scores."""

from __future__ import annotations

import numpy as np

from ml.classifiers import load_classifier
from ml.hybrid import combine, train_hybrid


def test_the_hybrid_trusts_the_stage_that_separates_the_classes():
    """Stacking over two stages' held-out scores: a stage that tells spam from ham gets the
    weight, a stage that is noise gets little, and the round trip keeps the scores."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    informative = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.15, len(y)), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, len(y))
    stacker, oof, params = train_hybrid(y, noise, informative)
    weights = params["stage_weights"]
    assert weights["language model"] > 5 * abs(weights["text"])
    assert oof.shape == y.shape and ((oof >= 0.5) == y).mean() > 0.9
    restored = load_classifier("hybrid", *stacker.to_artifact())
    np.testing.assert_allclose(combine(restored, noise, informative),
                               combine(stacker, noise, informative), atol=1e-6)
