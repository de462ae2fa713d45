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

On a Ray cluster (`--executor ray`, or auto beyond 1 GiB of vectors or with a Ray address) the same
methods run in tasks that each read their own rows (`audit_tasks`): the driver holds no vector.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from catdog import figures, storage
from catdog.config import AuditConfig
from catdog.extraction import originals
from catdog.insight import audit_tasks, embeddings, findings, neighbour_lists, neighbours, sharded, similar
from catdog.insight.findings import LabelIssue, Outlier

DEFAULT_DIR = "audit"  # under OUT, when no folder is given
LABEL_ISSUES, OUTLIERS, DUPLICATES, REPORT = "label_issues.csv", "outliers.csv", "duplicates.csv", "audit.json"
DUPLICATE_NEIGHBOURS = 5  # neighbours looked at per image for near-duplicates (as `catdog similar` by default)
SHEET = 16  # images per contact sheet
SHEETS = ("label_issues.png", "outliers.png", "duplicates.png")


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
    executor: str = "local"  # "local" (this process) or "ray" (tasks on the cluster)
    why: str = ""  # why that executor
    tasks: dict[str, dict[str, int]] | None = None  # on Ray: node -> {"tasks": n, "rows": rows read}

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
            f"where       {sharded.ran(self.executor, self.why, self.tasks)}",
            *(f"note        {note}" for note in self.notes),
            f"report      {self.report_dir}/{REPORT}" + (f" and contact sheets {', '.join(self.sheets)}" if self.sheets else ""),
        ]


def run(config: AuditConfig) -> AuditReport:
    out = storage.resolve(config.features)
    report_dir = config.report_dir or str(similar.beside(out, config).join(DEFAULT_DIR))
    report = storage.resolve(report_dir)
    source = sharded.Source(out, config.features_column, config.path_column, config.split_column, config.label_column)
    where, why = similar.choose(config, source)
    if where == "ray":
        return _on_ray(config, out, source, report_dir, why)
    loaded = embeddings.load(config)
    data, left_out = embeddings.usable(loaded, out, "an audit")
    notes = [left_out] if left_out else []
    labeled = data.y >= 0
    X, y, paths, splits = data.X[labeled], data.y[labeled], data.paths[labeled], data.splits[labeled]
    started = time.perf_counter()
    chosen = findings.audited(y, data.classes, config.folds, out)
    y, classes, folds = chosen.y, chosen.classes, chosen.folds
    notes += chosen.notes
    P = findings.out_of_fold(X, y, findings.fold_of(y, folds, config.seed), config.seed)
    issues = findings.label_issues(P, y, paths, splits, classes)
    found = []
    for k in range(len(classes)):
        members = np.flatnonzero(y == k)
        above, scores, distances = findings.class_outliers(X[members], config.neighbours, config.outlier_z)
        found += [(float(z), float(d), str(paths[members[i]]), str(splits[members[i]]), classes[k])
                  for i, z, d in zip(above, scores, distances)]
    health = findings.class_health(P, y, classes)
    balance = {s: {c: int(((splits == s) & (y == k)).sum()) for k, c in enumerate(classes)} for s in sorted(set(splits))}
    report.join(sharded.LISTS).delete()  # a Ray run's lists: this run's are neighbours.parquet
    with storage.writable_folder(report) as local:
        # The duplicates' neighbour lists are kept in the report folder, as `similar` keeps its own:
        # the audit after an incremental extract searches only the images that changed.
        near, similarity, search, update = neighbour_lists.find(
            neighbours.unit(data.X), list(zip(data.splits.tolist(), data.paths.tolist())),
            report, local, top=DUPLICATE_NEIGHBOURS, threshold=config.duplicate_threshold)
        duplicates = similar.pairs(near, similarity, config.duplicate_threshold, data.paths, data.splits)
        seconds = round(time.perf_counter() - started, 2)
        audited = AuditReport(report_dir, int(len(y)), classes, issues, findings.ranked_outliers(found), health, balance,
                              seconds, notes, duplicates, search, update, executor="local", why=why)
        return _write(config, out, local, audited, folds, len(loaded))


def _on_ray(config: AuditConfig, out: storage.Location, source: sharded.Source, report_dir: str, why: str) -> AuditReport:
    """The audit in Ray tasks (`audit_tasks`): the vectors are read by the tasks, never here."""
    import functools

    from catdog import cluster

    report = storage.resolve(report_dir)
    local_disk = (out.is_local or report.is_local) and not config.shared_fs
    started = time.perf_counter()
    with cluster.ray_session(config.address):
        found = audit_tasks.find(source, report, functools.partial(cluster.tasks, local_disk=local_disk),
                                 folds=config.folds, seed=config.seed, neighbours=config.neighbours,
                                 outlier_z=config.outlier_z, duplicate_top=DUPLICATE_NEIGHBOURS,
                                 duplicate_threshold=config.duplicate_threshold, memory=int(config.task_memory * 2**20))
    seconds = round(time.perf_counter() - started, 2)
    duplicates = [similar.Pair(a, b, split_a, split_b, cosine) for a, split_a, b, split_b, cosine in found.duplicates.pairs]
    report.join(neighbour_lists.FILE).delete()  # a local run's lists: this run's are in neighbours/
    with storage.writable_folder(report) as local:
        audited = AuditReport(report_dir, found.images, found.classes, found.issues, found.outliers, found.health,
                              found.balance, seconds, found.notes, duplicates, found.duplicates.search, None,
                              executor="ray", why=why, tasks={node: dict(t) for node, t in found.tasks.items()})
        return _write(config, out, local, audited, found.folds, found.rows, streamed=found.streamed)


def _write(config: AuditConfig, out: storage.Location, local: str, report: AuditReport, folds: int, rows: int,
           streamed: bool = False) -> AuditReport:
    """The CSV files, contact sheets and audit.json of `report`, written into `local`."""
    notes = list(report.notes)
    _csv(os.path.join(local, LABEL_ISSUES), report.label_issues)
    _csv(os.path.join(local, OUTLIERS), report.outliers)
    similar.write_csv(report.duplicates, os.path.join(local, DUPLICATES))
    if config.features_column:
        notes.append(similar.NO_SHEETS)
    elif report.duplicates:
        note = similar.contact_sheet(out, report.duplicates, os.path.join(local, "duplicates.png"))
        notes += [note] if note else []
    for name, rows_, caption, title in () if config.features_column else (
            ("label_issues.png", report.label_issues, lambda i: f"{i.split}: given {i.given}\nsuggested {i.suggested} "
             f"({i.self_confidence:.2f})", "likely label errors (lowest self-confidence first)"),
            ("outliers.png", report.outliers, lambda o: f"{o.split}/{o.label}\nz = {o.score:.1f}", "outliers within their class")):
        note = _contact_sheet(out, rows_[:SHEET], caption, title, os.path.join(local, name))
        notes += [note] if note else []
    sheets = tuple(n for n in SHEETS if os.path.exists(os.path.join(local, n)))  # only what was written
    report = replace(report, notes=notes, sheets=sheets)
    search, update = report.duplicate_search, report.duplicate_update
    record = {"images": report.images, "classes": list(report.classes), "label_issues": len(report.label_issues),
              "outliers": len(report.outliers), "duplicates": len(report.duplicates), "across_splits": report.across_splits,
              "seconds": report.seconds, "sheets": list(sheets), "health": report.health, "balance": report.balance,
              "notes": notes, "duplicate_search": asdict(search) if search else None,
              "duplicate_update": asdict(update) if update else None, "executor": report.executor, "why": report.why,
              "tasks": report.tasks, "settings": asdict(config) | {"folds": folds}, "method": _method(streamed),
              "source": source_state(out, config, rows)}
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


def _method(streamed: bool = False) -> dict:
    from importlib.metadata import version

    head = (f"SGDClassifier(log_loss, alpha={audit_tasks.STREAM_ALPHA}) streamed, {audit_tasks.STREAM_EPOCHS} passes"
            if streamed else "LogisticRegression(C=1)")
    return {"label_issues": "confident learning (cleanlab.filter.find_label_issues), ranked by self-confidence",
            "probabilities": f"out-of-fold (stratified folds), StandardScaler + {head}", "cleanlab": version("cleanlab")}
