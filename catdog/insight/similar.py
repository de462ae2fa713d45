"""The `catdog similar` job: nearest neighbours by cosine similarity on the stored features, the
near-duplicate pairs among them, and the leakage check: near-duplicates across train, validation
and test make a test score look better than the model is.

Exact neighbours from scikit-learn's brute-force `NearestNeighbors` (cosine), which computes the
distance matrix a block of rows at a time under `working_memory`: memory is the features
(n x dim float32) plus that block, for 100,000 images as for 1,000.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from catdog import figures, storage
from catdog.config import SimilarConfig
from catdog.extraction import originals
from catdog.insight import embeddings
from catdog.store import layout

SHEET_PAIRS = 12
CSV, SHEET = "similar.csv", "similar.png"
NO_SHEETS = "another tool's embeddings: no contact sheets (catdog finds the images from its own manifest)"


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    split_a: str
    split_b: str
    cosine: float

    @property
    def across(self) -> bool:
        return self.split_a != self.split_b


def neighbours(X: np.ndarray, top: int, working_memory_mb: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `top` nearest other rows: (n, top) indices and cosine similarities, nearest first."""
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors

    k = min(top + 1, len(X))  # +1: a row is its own nearest neighbour
    with config_context(working_memory=working_memory_mb):
        distances, indices = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(X).kneighbors(X)
    # A row's own index is usually first, but an exact duplicate may come before it: drop it wherever it is.
    others = indices != np.arange(len(X))[:, None]
    rows = np.argsort(~others, axis=1, kind="stable")[:, : k - 1]  # the first k-1 entries that are not self
    return np.take_along_axis(indices, rows, 1), 1.0 - np.take_along_axis(distances, rows, 1)


def pairs(indices: np.ndarray, similarity: np.ndarray, threshold: float, paths: np.ndarray, splits: np.ndarray) -> list[Pair]:
    """Neighbour pairs at or above the threshold, each once, the most similar first."""
    found: dict[tuple[int, int], float] = {}
    for i, j in zip(*np.nonzero(similarity >= threshold)):
        a, b = sorted((i, int(indices[i, j])))
        found[(a, b)] = max(found.get((a, b), -1.0), float(similarity[i, j]))
    ordered = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return [Pair(str(paths[a]), str(paths[b]), str(splits[a]), str(splits[b]), s) for (a, b), s in ordered]


@dataclass(frozen=True)
class SimilarReport:
    """What `catdog similar` found, as in report_dir/similar.json (pairs also in similar.csv)."""

    report_dir: str
    images: int
    threshold: float
    top: int
    pairs: list[Pair]  # the near-duplicate pairs, the most similar first
    across_splits: int  # pairs whose images are in different splits: leakage
    by_split_pair: dict[str, int]  # "test / train" -> pairs across those two splits
    seconds: float  # the neighbour search
    notes: list[str]
    contact_sheet: bool = False  # similar.png written (there were pairs, and their images could be read)

    def lines(self) -> list[str]:
        result = [f"{self.images:,} images, {self.top} nearest each: {len(self.pairs):,} pairs with cosine "
                  f">= {self.threshold} ({self.seconds} s)",
                  f"across splits (leakage): {self.across_splits:,}"
                  + "".join(f"\n  {k}: {v:,}" for k, v in self.by_split_pair.items())]
        result += [f"note: {n}" for n in self.notes]
        return result + [f"pairs in {storage.join(self.report_dir, CSV)}" + (f", contact sheet {SHEET}" if self.contact_sheet else "")]


def run(config: SimilarConfig) -> SimilarReport:
    """Find the near-duplicates of OUT and write similar.csv, similar.json and similar.png to the report folder."""
    out = storage.resolve(config.features)
    data = embeddings.load(config)
    X, paths, splits = data.X, data.paths, data.splits
    started = time.perf_counter()
    indices, similarity = neighbours(X, config.top, config.working_memory_mb)
    found = pairs(indices, similarity, config.threshold, paths, splits)
    seconds = round(time.perf_counter() - started, 2)
    across = Counter(" / ".join(sorted((p.split_a, p.split_b))) for p in found if p.across)
    report_dir = config.report_dir or str(beside(out, config).join(layout.SIMILAR))  # a URI's query stays at its end
    notes = []
    with storage.writable_folder(storage.resolve(report_dir)) as local:
        write_csv(found, os.path.join(local, CSV))
        note = NO_SHEETS if config.features_column else contact_sheet(out, found, os.path.join(local, SHEET))
        notes += [note] if note else []
        report = SimilarReport(report_dir, int(len(X)), config.threshold, config.top, found, sum(across.values()),
                               dict(across.most_common()), seconds, notes, os.path.exists(os.path.join(local, SHEET)))
        record = {k: v for k, v in asdict(report).items() if k not in ("pairs", "report_dir")}
        with open(os.path.join(local, "similar.json"), "w") as f:
            json.dump({**record, "pairs": len(found), "pairs_listed": [asdict(p) for p in found[:1000]]}, f, indent=2)
    return report


def beside(out: storage.Location, config) -> storage.Location:
    """Where the report goes without --out: under OUT, or beside a foreign embeddings file."""
    return out.parent() if config.features_column and not out.is_dir() else out


def write_csv(found: list[Pair], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path_a", "split_a", "path_b", "split_b", "cosine", "across_splits"])
        writer.writerows((p.a, p.split_a, p.b, p.split_b, f"{p.cosine:.6f}", int(p.across)) for p in found)


def contact_sheet(out: storage.Location, found: list[Pair], path: str) -> str | None:
    """similar.png: the most similar pairs, those across splits first."""
    if not found:
        return "no pairs above the threshold: no contact sheet"
    shown = sorted(found, key=lambda p: not p.across)[:SHEET_PAIRS]
    pictures, note = originals.decode(originals.settings(out), [x for p in shown for x in (p.a, p.b)])
    if note:
        return f"{note}: no contact sheet"
    rows = [(pictures[2 * i], pictures[2 * i + 1], f"{p.cosine:.4f}  {p.split_a}/{os.path.basename(p.a)} | "
             f"{p.split_b}/{os.path.basename(p.b)}") for i, p in enumerate(shown) if 2 * i in pictures and 2 * i + 1 in pictures]
    if not rows:
        return "none of the pairs' images could be read: no contact sheet"
    figures.plot_pairs(rows, path, "near-duplicates (most similar first; across splits first)")
    return None
