"""The `catdog audit` job: what is wrong with the data, found from the stored features.

- **Label issues**: out-of-fold probabilities (K-fold over every labeled image, `catdog head`'s
  logistic regression on the features) into confident learning (Northcutt, Jiang and Chuang,
  "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021) through cleanlab's
  `find_label_issues`, ranked by self-confidence (the out-of-fold probability of the given class).
- **Outliers**: per class, the cosine distance of each image to its k-th nearest neighbour of the
  same class; an image is an outlier when that distance is far above its class's own: a robust
  z-score (median and MAD of the class) above `outlier_z`.
- **Class health**: class balance per split, and per-class precision, recall and F1 with the
  confusion matrix of the out-of-fold predictions (what a head would get wrong, class by class).

- **Near-duplicates and leakage**: `catdog similar`'s pairs (cosine at or above
  `duplicate_threshold`, unlabeled images included), those across splits counted apart.

Every split is audited together, the split named in each row; unlabeled images are left out of the
label issues, outliers and class health. The features may be catdog's OUT or another tool's
embeddings (`catdog.insight.embeddings`).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from catdog import figures, storage
from catdog.config import AuditConfig
from catdog.errors import CatdogError
from catdog.extraction import originals
from catdog.heads.models import logreg_pipeline
from catdog.insight import embeddings, neighbour_lists, neighbours, similar

DEFAULT_DIR = "audit"  # under OUT, when no folder is given
LABEL_ISSUES, OUTLIERS, DUPLICATES, REPORT = "label_issues.csv", "outliers.csv", "duplicates.csv", "audit.json"
DUPLICATE_NEIGHBOURS = 5  # neighbours looked at per image for near-duplicates (as `catdog similar` by default)
SHEET = 16  # images per contact sheet
SHEETS = ("label_issues.png", "outliers.png", "duplicates.png")


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
class AuditReport:
    report_dir: str
    images: int  # labeled images audited
    classes: tuple[str, ...]
    label_issues: list[LabelIssue]
    outliers: list[Outlier]
    health: dict  # per class: images, precision, recall, f1; "confusion": rows true, columns predicted
    balance: dict  # split -> class -> images
    seconds: float
    notes: list[str]
    duplicates: list = ()  # near-duplicate pairs (catdog.insight.similar.Pair), the most similar first
    duplicate_search: neighbours.Search | None = None  # how they were found (None: updated from the last audit's lists)
    duplicate_update: neighbour_lists.Update | None = None  # what an incremental audit searched
    sheets: tuple[str, ...] = ()  # the contact sheets written into report_dir

    @property
    def across_splits(self) -> int:
        """Near-duplicate pairs whose images are in different splits: leakage."""
        return sum(p.across for p in self.duplicates)

    def lines(self) -> list[str]:
        n = max(self.images, 1)
        worst = min(self.classes, key=lambda c: self.health[c]["recall"]) if self.classes else ""
        return [
            f"audited     {self.images:,} labeled images, {len(self.classes)} classes, in {self.seconds:.1f} s",
            f"label issues {len(self.label_issues):,} ({len(self.label_issues) / n:.1%}): {self.report_dir}/{LABEL_ISSUES}",
            f"outliers    {len(self.outliers):,} ({len(self.outliers) / n:.1%}): {self.report_dir}/{OUTLIERS}",
            f"duplicates  {len(self.duplicates):,} near-duplicate pairs, {self.across_splits:,} across splits (leakage): "
            f"{self.report_dir}/{DUPLICATES}",
            f"classes     out-of-fold accuracy {self.health['accuracy']:.3f}; lowest recall: {worst} "
            f"({self.health[worst]['recall']:.3f})" if worst else "classes     none",
            *(f"note        {note}" for note in self.notes),
            f"report      {self.report_dir}/{REPORT}" + (f" and contact sheets {', '.join(self.sheets)}" if self.sheets else ""),
        ]


def run(config: AuditConfig) -> AuditReport:
    out = storage.resolve(config.features)
    loaded = embeddings.load(config)
    data, left_out = embeddings.usable(loaded, out, "an audit")
    notes = [left_out] if left_out else []
    labeled = data.y >= 0
    X, y, paths, splits = data.X[labeled], data.y[labeled], data.paths[labeled], data.splits[labeled]
    counts = np.bincount(y, minlength=len(data.classes))
    # A class without labeled images (an empty class folder) is left out of the audit: the heads'
    # probabilities have a column per class they saw, and confident learning one per such column.
    empty = [c for c, n in zip(data.classes, counts) if not n]
    if empty:
        notes.append(f"classes without labeled images left out: {', '.join(empty)}")
    present = np.flatnonzero(counts)
    classes = tuple(data.classes[k] for k in present)
    y = np.searchsorted(present, y)
    counts = counts[present]
    if len(classes) < 2:
        raise CatdogError(f"{out} has fewer than two classes with labeled images: nothing to audit")
    started = time.perf_counter()
    folds = min(config.folds, int(counts.min()))
    if folds < 2:
        raise CatdogError(f"class {classes[int(np.argmin(counts))]} has one image: "
                          "out-of-fold probabilities need at least two per class")
    if folds < config.folds:
        notes.append(f"{folds} folds, not {config.folds}: the smallest class has {folds} images")
    P = out_of_fold(X, y, folds, config.seed)
    issues = label_issues(P, y, paths, splits, classes)
    found = outliers(X, y, paths, splits, classes, config.neighbours, config.outlier_z)
    health = class_health(P, y, classes)
    balance = {s: {c: int(((splits == s) & (y == k)).sum()) for k, c in enumerate(classes)} for s in sorted(set(splits))}
    report_dir = config.report_dir or str(similar.beside(out, config).join(DEFAULT_DIR))
    with storage.writable_folder(storage.resolve(report_dir)) as local:
        # The duplicates' neighbour lists are kept in the report folder, as `similar` keeps its own:
        # the audit after an incremental extract searches only the images that changed.
        near, similarity, search, update = neighbour_lists.find(
            neighbours.unit(data.X), list(zip(data.splits.tolist(), data.paths.tolist())),
            storage.resolve(report_dir), local, top=DUPLICATE_NEIGHBOURS, threshold=config.duplicate_threshold)
        duplicates = similar.pairs(near, similarity, config.duplicate_threshold, data.paths, data.splits)
        seconds = round(time.perf_counter() - started, 2)
        _csv(os.path.join(local, LABEL_ISSUES), issues)
        _csv(os.path.join(local, OUTLIERS), found)
        similar.write_csv(duplicates, os.path.join(local, DUPLICATES))
        if config.features_column:
            notes.append(similar.NO_SHEETS)
        elif duplicates:
            note = similar.contact_sheet(out, duplicates, os.path.join(local, "duplicates.png"))
            notes += [note] if note else []
        for name, rows, caption, title in () if config.features_column else (
                ("label_issues.png", issues, lambda i: f"{i.split}: given {i.given}\nsuggested {i.suggested} "
                 f"({i.self_confidence:.2f})", "likely label errors (lowest self-confidence first)"),
                ("outliers.png", found, lambda o: f"{o.split}/{o.label}\nz = {o.score:.1f}", "outliers within their class")):
            note = _contact_sheet(out, rows[:SHEET], caption, title, os.path.join(local, name))
            notes += [note] if note else []
        sheets = tuple(n for n in SHEETS if os.path.exists(os.path.join(local, n)))  # only what was written
        report = AuditReport(report_dir, int(len(y)), classes, issues, found, health, balance, seconds, notes,
                             duplicates, search, update, sheets)
        record = {"images": report.images, "classes": list(classes), "label_issues": len(issues),
                  "outliers": len(found), "duplicates": len(duplicates), "across_splits": report.across_splits,
                  "seconds": seconds, "sheets": list(sheets), "health": health, "balance": balance, "notes": notes,
                  "duplicate_search": asdict(search) if search else None, "duplicate_update": asdict(update) if update else None,
                  "settings": asdict(config) | {"folds": folds}, "method": _method(),
                  "source": source_state(out, config, len(loaded))}
        with open(os.path.join(local, REPORT), "w") as f:
            json.dump(record, f, indent=2)
    return report


def source_state(out: storage.Location, config, rows: int) -> dict:
    """What the audit was made of: the features (and columns) read, their rows, and OUT's generation,
    so that a report can tell an audit of these features as they are now from an older one."""
    from catdog.store import manifest

    recorded = None if config.features_column else manifest.read(out)
    return {"features": str(out), "features_column": config.features_column, "rows": rows,
            "generation": recorded.generation if recorded else None}


def out_of_fold(X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(n, K) probabilities, each row from the head fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(logreg_pipeline(1.0, seed), X, y, cv=cv, method="predict_proba")


def label_issues(P: np.ndarray, y: np.ndarray, paths, splits, classes) -> list[LabelIssue]:
    from cleanlab.filter import find_label_issues

    # n_jobs=1: cleanlab's default forks a process pool, which in a process running Ray's threads
    # (a notebook, the CLI) can deadlock; the work is a few numpy passes over (n, K).
    ranked = find_label_issues(labels=y, pred_probs=P, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [LabelIssue(str(paths[i]), str(splits[i]), classes[y[i]], classes[int(P[i].argmax())],
                       round(float(P[i, y[i]]), 6), rank) for rank, i in enumerate(ranked, 1)]


def outliers(X: np.ndarray, y: np.ndarray, paths, splits, classes, k: int, z: float) -> list[Outlier]:
    found = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if len(members) < 3:
            continue
        n = min(k, len(members) - 1)
        _, similarity, _ = neighbours.search(neighbours.unit(X[members]), n)
        kth = 1.0 - similarity[:, n - 1].astype(np.float64)
        median = np.median(kth)
        mad = 1.4826 * np.median(np.abs(kth - median)) + 1e-12
        scores = (kth - median) / mad
        found += [(float(scores[j]), float(kth[j]), int(i)) for j, i in enumerate(members) if scores[j] > z]
    found.sort(reverse=True)
    return [Outlier(str(paths[i]), str(splits[i]), classes[y[i]], round(d, 6), round(s, 3), rank)
            for rank, (s, d, i) in enumerate(found, 1)]


def class_health(P: np.ndarray, y: np.ndarray, classes) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = P.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    health = {c: {"images": int(support[k]), "precision": round(float(precision[k]), 4),
                  "recall": round(float(recall[k]), 4), "f1": round(float(f1[k]), 4)} for k, c in enumerate(classes)}
    return {**health, "accuracy": round(float((predicted == y).mean()), 4),
            "confusion": confusion_matrix(y, predicted, labels=labels).tolist()}


def _csv(path: str, rows: list) -> None:
    fields = list(LabelIssue.__dataclass_fields__ if path.endswith(LABEL_ISSUES) else Outlier.__dataclass_fields__)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerows([getattr(r, name) for name in fields] for r in rows)


def _contact_sheet(out: storage.Location, rows: list, caption, title: str, path: str) -> str | None:
    if not rows:
        return None
    pictures, note = originals.decode(originals.settings(out), [r.path for r in rows])
    if note:
        return f"{note}: no {os.path.basename(path)}"
    shown = [i for i in range(len(rows)) if i in pictures]
    figures.plot_wrong([pictures[i] for i in shown], [caption(rows[i]) for i in shown], path, title)
    return None


def _method() -> dict:
    from importlib.metadata import version

    return {"label_issues": "confident learning (cleanlab.filter.find_label_issues), ranked by self-confidence",
            "probabilities": "out-of-fold, StandardScaler + LogisticRegression(C=1)", "cleanlab": version("cleanlab")}
