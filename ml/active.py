"""Active learning: which unlabeled emails a person should label to improve the model most.

Uncertainty: the emails whose score lies nearest the spam threshold (in log-odds), where a
label can move the threshold or the boundary. Diversity: among the most uncertain (a pool of
``POOL_FACTOR`` × k), a greedy k-centre walk over the document vectors, so ten near-copies of
one campaign cost one label, not ten. Each pick maximises the distance to the emails
already picked, shrunk by its uncertainty.
"""

from __future__ import annotations

import numpy as np

from ml.odds import log_odds

POOL_FACTOR = 10


def uncertainty(p_spam: np.ndarray, threshold: float) -> np.ndarray:
    """How far each score lies from the threshold, in log-odds (0: on it)."""
    return np.abs(log_odds(p_spam) - log_odds(np.array([threshold]))[0])


def choose(p_spam: np.ndarray, threshold: float, k: int,
           vectors: np.ndarray | None = None) -> list[int]:
    """Positions of the ``k`` emails to label, in the order to label them. ``vectors``: unit
    document vectors (rows of zeros where an email has none), or None for uncertainty
    alone."""
    distance = uncertainty(p_spam, threshold)
    pool = np.argsort(distance, kind="stable")[:POOL_FACTOR * k]
    if vectors is None or len(pool) <= 1:
        return pool[:k].tolist()
    pool_vectors = np.asarray(vectors, dtype=float)[pool]
    closeness = 1 / (1 + distance[pool])
    chosen = [0]  # the most uncertain first
    nearest = 1 - pool_vectors @ pool_vectors[0]  # cosine distance to the nearest pick
    while len(chosen) < min(k, len(pool)):
        score = nearest * closeness
        score[chosen] = -np.inf
        pick = int(np.argmax(score))
        chosen.append(pick)
        nearest = np.minimum(nearest, 1 - pool_vectors @ pool_vectors[pick])
    return pool[chosen].tolist()
