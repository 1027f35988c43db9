import numpy as np

from ml.active import choose, uncertainty


def test_uncertainty_is_the_log_odds_distance_to_the_threshold():
    u = uncertainty(np.array([0.5, 0.9, 0.1, 0.99]), 0.9)
    assert u[1] == 0 and u[0] < u[3] < u[2]  # 0.99 is nearer 0.9 than 0.1 is, in log-odds


def test_without_vectors_the_most_uncertain_come_first():
    p = np.array([0.01, 0.6, 0.99, 0.75, 0.3])
    assert choose(p, 0.7, 3) == [3, 1, 4]


def test_near_copies_cost_one_label():
    """Five copies of one campaign right at the threshold and three distinct emails a little
    further: the queue takes one copy, then the distinct ones."""
    rng = np.random.default_rng(0)
    campaign = rng.normal(size=8)
    copies = campaign + rng.normal(scale=0.01, size=(5, 8))
    others = rng.normal(size=(3, 8))
    vectors = np.vstack([copies, others])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    p = np.array([0.5] * 5 + [0.4, 0.6, 0.35])
    picked = choose(p, 0.5, 4, vectors)
    assert picked[0] in range(5) and sorted(picked[1:]) == [5, 6, 7]
    assert choose(p, 0.5, 4) == [0, 1, 2, 3]  # uncertainty alone: four copies


def test_fewer_candidates_than_asked():
    assert choose(np.array([0.4, 0.6]), 0.5, 5, np.eye(2)) in ([0, 1], [1, 0])
    assert choose(np.array([]), 0.5, 5) == []
