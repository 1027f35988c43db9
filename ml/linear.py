"""Linear spam classifiers: a decision function ``w·x + b`` squashed by Platt calibration.

Two feature spaces share this: encoder vectors (the linear probe) and TF-IDF of the text
(the classical baseline, in ``ml.baseline``). Training always returns out-of-fold
probabilities for every training example, from which thresholds and metrics are chosen
without touching the final model's own training fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ml.arrays import pack, unpack
from ml.odds import sigmoid

C_GRID = np.logspace(-3, 3, 13)


class NotEnoughLabels(ValueError):
    pass


def check_labels(y: np.ndarray) -> int:
    """The size of the smaller class; raises unless both classes have two examples."""
    y = np.asarray(y, dtype=bool)
    smallest = int(min(np.sum(y), np.sum(~y)))
    if smallest < 2:
        raise NotEnoughLabels(f"need at least 2 labeled emails of each class (spam and ham); "
                              f"have {int(y.sum())} spam and {int((~y).sum())} ham")
    return smallest


def folds_for(y: np.ndarray, wanted: int = 5, seed: int = 0) -> StratifiedKFold:
    smallest = check_labels(y)
    return StratifiedKFold(n_splits=min(wanted, smallest), shuffle=True, random_state=seed)


def platt(decision: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sigmoid calibration ``p = 1 / (1 + exp(-(a·d + b)))`` fitted on held-out decisions."""
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(decision.reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


@dataclass
class LinearProbe:
    """A calibrated linear classifier on encoder vectors."""

    coef: np.ndarray
    intercept: float
    calibration: tuple[float, float]
    kind = "linear"

    def decision(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.coef + self.intercept

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return sigmoid(a * self.decision(vectors) + b)

    def to_artifact(self) -> tuple[dict, bytes]:
        return ({"intercept": self.intercept, "calibration": list(self.calibration),
                 "dim": int(self.coef.shape[0])}, pack(coef=self.coef))

    @classmethod
    def from_artifact(cls, artifact: dict, blob: bytes) -> LinearProbe:
        return cls(coef=unpack(blob)["coef"].astype(np.float32),
                   intercept=float(artifact["intercept"]),
                   calibration=tuple(artifact["calibration"]))


def fit_logistic(X, y: np.ndarray, seed: int = 0, c_grid: np.ndarray = C_GRID
                 ) -> tuple[LogisticRegression, np.ndarray, dict]:
    """Choose C by cross-validated log loss, fit on everything, and return the fitted model,
    out-of-fold decision values for every example, and the chosen hyper-parameters."""
    folds = folds_for(y, seed=seed)
    search = LogisticRegressionCV(Cs=c_grid, cv=folds, class_weight="balanced",
                                  scoring="neg_log_loss", max_iter=5000, l1_ratios=(0.0,),
                                  use_legacy_attributes=False)
    search.fit(X, y)
    best_c = float(np.ravel(search.C_)[0])
    model = LogisticRegression(C=best_c, class_weight="balanced", max_iter=5000)
    oof = cross_val_predict(model, X, y, cv=folds, method="decision_function")
    model.fit(X, y)
    return model, oof, {"C": best_c, "class_weight": "balanced", "folds": folds.n_splits}


def train_linear_probe(vectors: np.ndarray, y: np.ndarray, seed: int = 0
                       ) -> tuple[LinearProbe, np.ndarray, dict]:
    """Fit the probe; returns it, out-of-fold calibrated probabilities, and its params."""
    y = np.asarray(y, dtype=int)
    model, oof, params = fit_logistic(vectors, y, seed=seed)
    calibration = platt(oof, y)
    probe = LinearProbe(coef=model.coef_[0].astype(np.float32),
                        intercept=float(model.intercept_[0]), calibration=calibration)
    a, b = calibration
    return probe, sigmoid(a * oof + b), params
