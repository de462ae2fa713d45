"""How good a classifier is: metrics per split and the printed tables (scikit-learn's metrics).

Probabilities are (n, K) arrays, one column per class in the order of the feature metadata's
`classes`, for two classes as for many; labels are class indices.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

CLIP = 1e-7  # probabilities are clipped to at least CLIP before a log: one sure mistake is not infinite
WRONG_GRID = 16
TOP_K = 5  # top-5 accuracy is reported when there are more classes than this
PER_CLASS_ROWS = 30  # more classes than this: the printed table shows the weakest ones only


def cross_entropy(y: np.ndarray, P: np.ndarray) -> float:
    clipped = np.clip(P, CLIP, 1.0)
    return float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=list(range(P.shape[1]))))


def accuracy(y: np.ndarray, P: np.ndarray) -> float:
    return float(accuracy_score(y, P.argmax(axis=1)))


def metrics(P: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """Everything the report says of one split; classes absent from `y` are named, not averaged."""
    labels = list(range(len(classes)))
    predicted = P.argmax(axis=1)
    present = sorted(set(y.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": said in `absent` instead
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y, predicted))
    return {
        "n": int(len(y)),
        "accuracy": accuracy(y, P),
        "balanced_accuracy": balanced,
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "log_loss": cross_entropy(y, P),
        "roc_auc": roc_auc(P, y),
        f"top_{TOP_K}_accuracy": (float(top_k_accuracy_score(y, P, k=TOP_K, labels=labels))
                                  if len(classes) > TOP_K else None),
        "per_class": {name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                             "support": int(support[k])} for k, name in enumerate(classes)},
        "absent": [classes[k] for k in labels if k not in present],
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
    }


def roc_auc(P: np.ndarray, y: np.ndarray) -> float | None:
    """Two classes: the usual AUC of the second class. More: one-vs-rest, averaged over the classes
    present (scikit-learn's own 'ovr' refuses a split that lacks a class)."""
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        return None
    if P.shape[1] == 2:
        return float(roc_auc_score(y, P[:, 1]))
    return float(np.mean([roc_auc_score(y == k, P[:, k]) for k in present]))


def table(by_split: dict[str, dict], classes: list[str]) -> str:
    """One row per split; two classes add the confusion matrix, more classes a per-class table."""
    top = f"top_{TOP_K}_accuracy"
    extra = f"{'top-' + str(TOP_K):>8}" if len(classes) > TOP_K else ""
    tail = "  confusion [[tn fp] [fn tp]]" if len(classes) == 2 else ""
    lines = [f"{'split':<12}{'n':>7}{'accuracy':>10}{'balanced':>10}{'macro_f1':>10}{'roc_auc':>9}{'log_loss':>10}"
             f"{extra}{tail}"]
    for split, m in by_split.items():
        auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        row = (f"{split:<12}{m['n']:>7}{m['accuracy']:>10.3f}{m['balanced_accuracy']:>10.3f}{m['macro_f1']:>10.3f}"
               f"{auc:>9}{m['log_loss']:>10.4f}")
        row += f"{m[top]:>8.3f}" if extra else ""
        lines.append(row + (f"  {m['confusion_matrix']}" if tail else ""))
    if len(classes) > 2 and by_split:
        lines += [""] + per_class_table(*list(by_split.items())[-1])
    return "\n".join(lines)


def per_class_table(split: str, m: dict) -> list[str]:
    rows = sorted(m["per_class"].items(), key=lambda item: item[1]["f1"]) if len(m["per_class"]) > PER_CLASS_ROWS \
        else list(m["per_class"].items())
    shown = rows[:PER_CLASS_ROWS]
    title = f"per class, {split}" + (f" (the {PER_CLASS_ROWS} lowest F1; all in report.json)" if len(rows) > len(shown) else "")
    width = max(12, *(len(name) + 2 for name, _ in shown))
    lines = [title, f"{'class':<{width}}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>7}"]
    lines += [f"{name:<{width}}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}{c['support']:>7}" for name, c in shown]
    if m["absent"]:
        lines.append(f"absent from {split}: {', '.join(m['absent'])}")
    return lines


def most_confidently_wrong(P: np.ndarray, y: np.ndarray, k: int = WRONG_GRID) -> np.ndarray:
    """Indices of the wrong predictions, the most confident first, at most k."""
    predicted = P.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    return wrong[np.argsort(-P[wrong, predicted[wrong]], kind="stable")][:k]
