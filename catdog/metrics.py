"""How good a classifier is: metrics per split and the printed table (scikit-learn's metrics)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score

CLIP = 1e-7  # probabilities are clipped to [CLIP, 1 - CLIP] before a log: one sure mistake is not infinite
WRONG_GRID = 16


def binary_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, np.clip(p, CLIP, 1 - CLIP), labels=[0, 1]))


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(accuracy_score(y, p >= 0.5))


def metrics(p: np.ndarray, y: np.ndarray) -> dict:
    predicted = (p >= 0.5).astype(int)
    both = len(set(y.tolist())) == 2
    return {
        "n": int(len(y)),
        "accuracy": accuracy(y, p),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "log_loss": binary_log_loss(y, p),
        "confusion_matrix": confusion_matrix(y, predicted, labels=[0, 1]).tolist(),
    }


def table(by_split: dict[str, dict]) -> str:
    lines = [f"{'split':<12}{'n':>7}{'accuracy':>10}{'roc_auc':>9}{'log_loss':>10}  confusion [[tn fp] [fn tp]]"]
    for split, m in by_split.items():
        auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        lines.append(f"{split:<12}{m['n']:>7}{m['accuracy']:>10.3f}{auc:>9}{m['log_loss']:>10.4f}  {m['confusion_matrix']}")
    return "\n".join(lines)


def most_confidently_wrong(p: np.ndarray, y: np.ndarray, k: int = WRONG_GRID) -> np.ndarray:
    """Indices of the wrong predictions, the most confident first, at most k."""
    wrong = np.flatnonzero((p >= 0.5) != (y == 1))
    return wrong[np.argsort(-np.abs(p[wrong] - 0.5), kind="stable")][:k]
