"""Classification metrics, curves and confusion matrix, as plain JSON-ready numbers."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

CURVE_POINTS = 100


def binary_metrics(y_true: np.ndarray, p_spam: np.ndarray, threshold: float) -> dict:
    """Spam is the positive class; an email is called spam when ``p_spam >= threshold``."""
    y_true = np.asarray(y_true, dtype=bool)
    called = np.asarray(p_spam) >= threshold
    tp = int(np.sum(called & y_true))
    fp = int(np.sum(called & ~y_true))
    fn = int(np.sum(~called & y_true))
    tn = int(np.sum(~called & ~y_true))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both_classes = 0 < y_true.sum() < len(y_true)
    return {
        "n": int(len(y_true)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / len(y_true) if len(y_true) else 0.0,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "roc_auc": float(roc_auc_score(y_true, p_spam)) if both_classes else None,
        "threshold": float(threshold),
    }


def confusion(y_true: np.ndarray, p_spam: np.ndarray, threshold: float) -> dict:
    y_true = np.asarray(y_true, dtype=bool)
    called = np.asarray(p_spam) >= threshold
    return {"tp": int(np.sum(called & y_true)), "fp": int(np.sum(called & ~y_true)),
            "fn": int(np.sum(~called & y_true)), "tn": int(np.sum(~called & ~y_true))}


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    index = np.unique(np.linspace(0, len(arrays[0]) - 1, CURVE_POINTS).round().astype(int))
    return [[round(float(a[i]), 5) for a in arrays] for i in index]


def curves(y_true: np.ndarray, p_spam: np.ndarray) -> dict:
    """ROC (fpr, tpr) and precision-recall (recall, precision) points, thinned for storage."""
    y_true = np.asarray(y_true, dtype=bool)
    if not 0 < y_true.sum() < len(y_true):
        return {"roc": [], "pr": []}
    fpr, tpr, _ = roc_curve(y_true, p_spam)
    precision, recall, _ = precision_recall_curve(y_true, p_spam)
    return {"roc": _thin(fpr, tpr), "pr": _thin(recall[::-1], precision[::-1])}
