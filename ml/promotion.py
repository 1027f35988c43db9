"""Whether a retrained model may replace the active one: both judged on the same holdout
mail, each at its own spam threshold. The candidate must not be worse: its F1 at most
``tolerance`` below the active model's, and no more false positives than one ham's worth
above (a false positive costs a user a real email)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ml.metrics import binary_metrics


@dataclass(frozen=True)
class Comparison:
    accepted: bool
    reason: str
    candidate: dict  # binary_metrics on the holdout set
    active: dict

    def to_dict(self) -> dict:
        return asdict(self)


def compare(y: np.ndarray, p_candidate: np.ndarray, candidate_threshold: float,
            p_active: np.ndarray, active_threshold: float, tolerance: float) -> Comparison:
    y = np.asarray(y, dtype=int)
    candidate = binary_metrics(y, p_candidate, candidate_threshold)
    active = binary_metrics(y, p_active, active_threshold)
    hams = int(len(y) - y.sum())
    one_ham = 1 / hams if hams else 0.0
    if candidate["f1"] < active["f1"] - tolerance:
        return Comparison(False, f"F1 on the holdout set {candidate['f1']:.3f} against the "
                          f"active model's {active['f1']:.3f}", candidate, active)
    if candidate["fpr"] > active["fpr"] + one_ham + 1e-12:
        return Comparison(False, f"false-positive rate on the holdout set "
                          f"{candidate['fpr']:.4f} against the active model's "
                          f"{active['fpr']:.4f}", candidate, active)
    return Comparison(True, f"not worse on the holdout set (F1 {candidate['f1']:.3f} against "
                      f"{active['f1']:.3f}, FPR {candidate['fpr']:.4f} against "
                      f"{active['fpr']:.4f})", candidate, active)
