"""What an audit finds, computed on arrays: the same methods whether one process holds every vector
(`audit`) or tasks each hold a part (`audit_tasks`).

- Out-of-fold probabilities: stratified folds over the labeled rows in their stored order; the head
  of each fold (`catdog head`'s logistic regression) fitted on the other folds' rows.
- Label issues: confident learning (Northcutt, Jiang and Chuang, JAIR 2021) through cleanlab's
  `find_label_issues` on those probabilities, ranked by self-confidence.
- Outliers: per class, the cosine distance of each image to its k-th nearest image of the class; a
  robust z-score (median and MAD of the class) above a threshold.
- Class health: per-class precision, recall and F1, and the confusion matrix, out of fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catdog.errors import CatdogError
from catdog.heads.models import logreg_pipeline
from catdog.insight import neighbours


@dataclass(frozen=True)
class LabelIssue:
    path: str
    split: str
    given: str
    suggested: str  # the most probable class out of fold
    self_confidence: float  # the out-of-fold probability of the given class
    rank: int  # 1: the most likely mislabeled


@dataclass(frozen=True)
class Outlier:
    path: str
    split: str
    label: str
    distance: float  # cosine distance to the k-th nearest image of its class
    score: float  # robust z-score of that distance within the class
    rank: int


@dataclass(frozen=True)
class Audited:
    """The classes an audit looks at, and its folds."""

    y: np.ndarray  # the labeled rows' classes, numbered among `classes`
    classes: tuple[str, ...]
    folds: int
    notes: list[str]


def audited(y: np.ndarray, classes: tuple[str, ...], folds: int, source) -> Audited:
    """The labeled rows' classes (`y`: indices into `classes`, every one >= 0): a class without
    labeled images (an empty class folder) is left out — the heads' probabilities have a column per
    class they saw, and confident learning one per such column — and the folds are as many as the
    smallest class allows. Fewer than two classes, or a class of one image, is one line."""
    counts = np.bincount(y, minlength=len(classes))
    notes = []
    empty = [c for c, n in zip(classes, counts) if not n]
    if empty:
        notes.append(f"classes without labeled images left out: {', '.join(empty)}")
    present = np.flatnonzero(counts)
    kept = tuple(classes[k] for k in present)
    if len(kept) < 2:
        raise CatdogError(f"{source} has fewer than two classes with labeled images: nothing to audit")
    counts = counts[present]
    used = min(folds, int(counts.min()))
    if used < 2:
        raise CatdogError(f"class {kept[int(np.argmin(counts))]} has one image: "
                          "out-of-fold probabilities need at least two per class")
    if used < folds:
        notes.append(f"{used} folds, not {folds}: the smallest class has {used} images")
    return Audited(np.searchsorted(present, y), kept, used, notes)


def fold_of(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(n,) the fold of each row: stratified by class, shuffled with the seed (scikit-learn's
    StratifiedKFold over the rows in their order)."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.empty(len(y), np.int8)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(cv.split(np.zeros((len(y), 1)), y)):
        fold[test] = f
    return fold


def fold_head(X: np.ndarray, y: np.ndarray, seed: int):
    """The head of one fold, fitted in memory on the other folds' rows."""
    return logreg_pipeline(1.0, seed).fit(X, y)


def out_of_fold(X: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int) -> np.ndarray:
    """(n, K) probabilities, each row from the head fitted on the other folds."""
    P = np.zeros((len(y), int(y.max()) + 1))
    for f in np.unique(fold):
        mine = fold == f
        P[mine] = fold_head(X[~mine], y[~mine], seed).predict_proba(X[mine])
    return P


def label_issues(P: np.ndarray, y: np.ndarray, paths, splits, classes) -> list[LabelIssue]:
    """The rows confident learning flags, the least self-confident first; `paths` and `splits` are
    indexed by row (arrays, or mappings holding the flagged rows)."""
    return [LabelIssue(str(paths[i]), str(splits[i]), classes[y[i]], classes[int(P[i].argmax())],
                       round(float(P[i, y[i]]), 6), rank) for rank, i in enumerate(flagged(P, y), 1)]


def flagged(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The rows confident learning flags, ranked."""
    from cleanlab.filter import find_label_issues

    # n_jobs=1: cleanlab's default forks a process pool, which in a process running Ray's threads
    # (a notebook, the CLI) can deadlock; the work is a few numpy passes over (n, K).
    return find_label_issues(labels=y, pred_probs=P, return_indices_ranked_by="self_confidence", n_jobs=1)


def class_outliers(X: np.ndarray, k: int, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's vectors: (rows above the threshold, their z-scores, their k-th neighbour's distance)."""
    if len(X) < 3:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    n = min(k, len(X) - 1)
    _, similarity, _ = neighbours.search(neighbours.unit(X), n)
    kth = 1.0 - similarity[:, n - 1].astype(np.float64)
    median = np.median(kth)
    mad = 1.4826 * np.median(np.abs(kth - median)) + 1e-12
    scores = (kth - median) / mad
    above = np.flatnonzero(scores > z)
    return above, scores[above], kth[above]


def ranked_outliers(found: list[tuple[float, float, str, str, str]]) -> list[Outlier]:
    """(score, distance, path, split, label) of every class's outliers, ranked: the highest score first."""
    found = sorted(found, key=lambda f: (-f[0], -f[1], f[2]))
    return [Outlier(path, split, label, round(d, 6), round(s, 3), rank)
            for rank, (s, d, path, split, label) in enumerate(found, 1)]


def class_health(P: np.ndarray, y: np.ndarray, classes) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = P.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    health = {c: {"images": int(support[k]), "precision": round(float(precision[k]), 4),
                  "recall": round(float(recall[k]), 4), "f1": round(float(f1[k]), 4)} for k, c in enumerate(classes)}
    return {**health, "accuracy": round(float((predicted == y).mean()), 4),
            "confusion": confusion_matrix(y, predicted, labels=labels).tolist()}
