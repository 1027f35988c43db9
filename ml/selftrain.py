"""Self-training: the mail a model is confident about, labeled by it (pseudo-labels), added
to the human labels for the next model. Pseudo-labels only ever label mail no person has
labeled, and each round keeps one spam share, so a confident model cannot flood the training
set with its favourite class.

That share is by default the deployment's own, as the starting model estimates it (the mean
of its calibrated p(spam) over the unlabeled mail): a deployment's mail need not have the
labeled mail's share of spam. In the simulated deployment (BENCHMARKS.md) the labeled mail
was 15 % spam and the deployment's 50 %; pseudo-labels at the labeled share gave F1 0.911
on its test part, at the estimated share (0.46) 0.926, against 0.902 without
self-training. ``share_from="labels"`` keeps the labeled mail's share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np

M = TypeVar("M")  # a model, whatever the caller trains
SHARE_FROM = ("unlabeled", "labels")


@dataclass(frozen=True)
class SelfTrainSettings:
    rounds: int = 3  # at most; a round that does not improve on the holdout set ends it
    confidence: float = 0.99  # p(spam) at least this is spam, at most 1 - this is ham
    max_per_class: int = 2000  # pseudo-labels of each class a round may add
    # The spam share of the pseudo-labels: "unlabeled" (the starting model's estimate on the
    # unlabeled mail) or "labels" (the human labels').
    share_from: str = "unlabeled"

    def __post_init__(self) -> None:
        if not 1 <= self.rounds <= 20:
            raise ValueError("rounds must be between 1 and 20")
        if not 0.5 < self.confidence < 1:
            raise ValueError("confidence must be above 0.5 and below 1")
        if self.max_per_class < 1:
            raise ValueError("max_per_class must be at least 1")
        if self.share_from not in SHARE_FROM:
            raise ValueError(f"share_from must be one of {', '.join(SHARE_FROM)}")

    def to_dict(self) -> dict:
        return asdict(self)


def pseudo_labels(p_spam: np.ndarray, settings: SelfTrainSettings, spam_share: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(positions, labels: 1 = spam) of the confident scores, the most confident first, at
    most ``max_per_class`` of each class, and as many of each as keep ``spam_share`` (the
    labeled mail's)."""
    p = np.asarray(p_spam, dtype=float)
    spam = np.flatnonzero(p >= settings.confidence)
    ham = np.flatnonzero(p <= 1 - settings.confidence)
    spam = spam[np.argsort(-p[spam], kind="stable")][:settings.max_per_class]
    ham = ham[np.argsort(p[ham], kind="stable")][:settings.max_per_class]
    share = min(max(spam_share, 0.01), 0.99)
    # The most of each that keeps the share: n_spam / (n_spam + n_ham) = share.
    n_spam = min(len(spam), int(len(ham) * share / (1 - share)))
    n_ham = min(len(ham), int(len(spam) * (1 - share) / share))
    spam, ham = spam[:n_spam], ham[:n_ham]
    return (np.concatenate([spam, ham]),
            np.concatenate([np.ones(len(spam), dtype=int), np.zeros(len(ham), dtype=int)]))


def self_train(start: M, score: Callable[[M], np.ndarray],
               fit: Callable[[np.ndarray, np.ndarray, int], M], judge: Callable[[M], float],
               labeled_share: float, settings: SelfTrainSettings) -> tuple[M, list[dict]]:
    """Rounds of self-training from the model ``start``: ``score(model)`` gives p(spam) of
    the unlabeled mail, ``fit(positions, labels, round)`` trains a model on the human labels
    and those pseudo-labels, ``judge(model)`` is its F1 on held-out labeled mail;
    ``labeled_share`` is the human labels' spam share. Returns the best model and what each
    round did (the worker and the deployment benchmark both run this). A round's model
    that is no worse than the best so far becomes the best (it has read the deployment's
    mail, which the holdout set, labeled mail of old, cannot reward); one that is worse, or
    no better, ends the run."""
    best, best_f1 = start, judge(start)
    p_start = score(start)
    spam_share = (float(np.mean(p_start)) if settings.share_from == "unlabeled" and len(p_start)
                  else labeled_share)
    rounds: list[dict] = [{"round": 0, "holdout_f1": best_f1, "spam_share": spam_share}]
    for number in range(1, settings.rounds + 1):
        p = p_start if number == 1 else score(best)
        positions, labels = pseudo_labels(p, settings, spam_share)
        if not len(positions):
            rounds.append({"round": number, "pseudo_labels": 0, "stopped": "none confident"})
            break
        candidate = fit(positions, labels, number)
        f1 = judge(candidate)
        rounds.append({"round": number, "holdout_f1": f1, "pseudo_labels": len(positions),
                       "pseudo_spam": int(labels.sum()), "model": candidate})
        if f1 < best_f1:
            rounds[-1]["stopped"] = "worse on the holdout set"
            break
        improved = f1 > best_f1
        best, best_f1 = candidate, f1  # no worse, and it has read the deployment's mail
        if not improved:
            rounds[-1]["stopped"] = "no better on the holdout set"
            break
    return best, rounds
