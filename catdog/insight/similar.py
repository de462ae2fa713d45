"""The `catdog similar` job: nearest neighbours by cosine similarity on the stored features, the
near-duplicate pairs among them, and the leakage check: near-duplicates across train, validation
and test make a test score look better than the model is.

The neighbours come from `neighbours` (exact while quick, an approximate index beyond) and are kept
in the report folder, so that the run after an incremental extract searches only what changed
(`neighbour_lists`).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from catdog import figures, storage
from catdog.config import SimilarConfig
from catdog.errors import CatdogError
from catdog.extraction import originals
from catdog.insight import embeddings, neighbour_lists, neighbours, sharded
from catdog.store import layout

SHEET_PAIRS = 12
CSV, SHEET = "similar.csv", "similar.png"
NO_SHEETS = "another tool's embeddings: no contact sheets (catdog finds the images from its own manifest)"
LOCAL_MAX_BYTES = 1 << 30  # auto: vectors up to this size are searched in this process


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


def pairs(indices: np.ndarray, similarity: np.ndarray, threshold: float, paths: np.ndarray, splits: np.ndarray) -> list[Pair]:
    """Neighbour pairs at or above the threshold, each once, the most similar first."""
    rows, columns = np.nonzero(similarity >= threshold)
    others = indices[rows, columns]
    a, b = np.minimum(rows, others), np.maximum(rows, others)
    cosines = similarity[rows, columns].astype(np.float64)
    # The same pair found from both ends keeps its higher cosine (the two may differ in the last bits).
    order = np.lexsort((-cosines, b, a))
    first = np.ones(len(order), bool)
    first[1:] = (a[order][1:] != a[order][:-1]) | (b[order][1:] != b[order][:-1])
    a, b, cosines = a[order][first], b[order][first], cosines[order][first]
    ordered = np.lexsort((b, a, -cosines))
    return [Pair(str(paths[i]), str(paths[j]), str(splits[i]), str(splits[j]), float(c))
            for i, j, c in zip(a[ordered], b[ordered], cosines[ordered])]


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
    search: neighbours.Search | None = None  # how the neighbours were found (exact, or approximate with its recall)
    update: neighbour_lists.Update | None = None  # an incremental run: what it searched (None: every image)
    executor: str = "local"  # "local" (this process) or "ray" (tasks on the cluster)
    why: str = ""  # why that executor
    tasks: dict[str, dict[str, int]] | None = None  # on Ray: node -> {"tasks": n, "rows": rows} (searched and merged)

    def lines(self) -> list[str]:
        return [f"{self.images:,} images, {self.top} nearest each: {len(self.pairs):,} pairs with cosine "
                f">= {self.threshold} ({self.seconds} s)", self.how(),
                f"across splits (leakage): {self.across_splits:,}"
                + "".join(f"\n  {k}: {v:,}" for k, v in self.by_split_pair.items()),
                self.where(), *(f"note: {n}" for n in self.notes),
                f"pairs in {storage.join_name(self.report_dir, CSV)}" + (f", contact sheet {SHEET}" if self.contact_sheet else "")]

    def where(self) -> str:
        """Where the search ran, in a line."""
        return sharded.ran(self.executor, self.why, self.tasks)

    def how(self) -> str:
        """How the neighbours were found, in a line."""
        s, u = self.search, self.update
        if u is not None:
            return (f"incremental: {u.added:,} added or changed images searched exactly, {u.searched_again:,} kept "
                    f"images searched again (a neighbour gone), {u.removed:,} gone, "
                    f"{u.kept - u.searched_again:,} lists updated (--full searches every image)")
        if s is None or s.method == "exact":
            return "exact search"
        pca = f", PCA to {s.pca_dims} dims ({s.pca_variance:.0%} of the variance)" if s.pca_dims else ""
        r = s.recall
        pairs = f", pairs {r.pairs_found:.3f} of {r.pairs}" if r.pairs_found is not None else ", no pair in the sample"
        return (f"approximate search (faiss {s.index}, {s.probes} probes, {s.candidates} candidates re-ranked "
                f"exactly{pca}); recall against exact on {r.sample:,} images: neighbours {r.neighbours:.3f}{pairs}")


def run(config: SimilarConfig) -> SimilarReport:
    """Find the near-duplicates of OUT and write similar.csv, similar.json and similar.png to the report folder."""
    out = storage.resolve(config.features)
    report_dir = config.report_dir or str(beside(out, config).join(layout.SIMILAR))  # a URI's query stays at its end
    source = sharded.Source(out, config.features_column, config.path_column, config.split_column)
    where, why = choose(config, source)
    if where == "ray":
        return _on_ray(config, out, source, report_dir, why)
    data, left_out = embeddings.usable(embeddings.load(config), out, "a near-duplicate search")
    paths, splits = data.paths, data.splits
    notes = [left_out] if left_out else []
    storage.resolve(report_dir).join(sharded.LISTS).delete()  # a Ray run's lists: this run's are neighbours.parquet
    with storage.writable_folder(storage.resolve(report_dir)) as local:
        started = time.perf_counter()
        X = neighbours.unit(data.X, copy=False)  # the loaded vectors are this job's own: scaled in place
        indices, similarity, search, update = neighbour_lists.find(
            X, list(zip(splits.tolist(), paths.tolist())), storage.resolve(report_dir), local, top=config.top,
            method=config.method, probes=config.probes, pca_dims=config.pca_dims, full=config.full,
            threshold=config.threshold)
        found = pairs(indices, similarity, config.threshold, paths, splits)
        seconds = round(time.perf_counter() - started, 2)
        return _report(config, out, local, report_dir, int(len(paths)), found, seconds, notes, search, update,
                       "local", why)


def choose(config: SimilarConfig, source: sharded.Source) -> tuple[str, str]:
    """Where the search runs, and why: in this process while the vectors fit it comfortably, unless
    a Ray address is given."""
    address = config.address or os.environ.get("RAY_ADDRESS")
    if config.executor == "local":
        if config.address:
            raise CatdogError(f"--executor local runs in this process; it cannot use the Ray cluster at {config.address}")
        return "local", "--executor local"
    if config.executor == "ray":
        return "ray", "--executor ray"
    if address:
        return "ray", "a Ray address"
    # A Ray this process joined (a notebook's) is not reason enough: vectors that fit here are searched
    # here, where a later run updates only what changed.
    rows, width = sharded.size(source)
    size = f"{rows:,} x {width} vectors, {rows * width * 4 / 2**30:.1f} GiB"
    return ("ray", f"{size}: more than {LOCAL_MAX_BYTES / 2**30:.0f} GiB") if rows * width * 4 > LOCAL_MAX_BYTES \
        else ("local", size)


def _on_ray(config: SimilarConfig, out: storage.Location, source: sharded.Source, report_dir: str, why: str) -> SimilarReport:
    """The search in Ray tasks (`catdog.insight.sharded`): the vectors are read by the tasks, never here."""
    from catdog import cluster

    report = storage.resolve(report_dir)
    local_disk = (out.is_local or report.is_local) and not config.shared_fs
    started = time.perf_counter()
    with cluster.ray_session(config.address):
        found = sharded.search(source, report, functools.partial(cluster.tasks, local_disk=local_disk), top=config.top,
                               method=config.method, probes=config.probes, pca_dims=config.pca_dims,
                               threshold=config.threshold, shard_bytes=int(config.task_memory * 2**20))
    seconds = round(time.perf_counter() - started, 2)
    listed = [Pair(a, b, split_a, split_b, cosine) for a, split_a, b, split_b, cosine in found.pairs]
    notes = [embeddings.left_out_note(found.non_finite)] if found.non_finite else []
    report.join(neighbour_lists.FILE).delete()  # a local run's lists: this run's are in neighbours/
    with storage.writable_folder(report) as local:
        return _report(config, out, local, report_dir, found.rows, listed, seconds, notes, found.search, None, "ray",
                       why, {node: dict(t) for node, t in found.tasks.items()})


def _report(config: SimilarConfig, out: storage.Location, local: str, report_dir: str, images: int, found: list[Pair],
            seconds: float, notes: list[str], search, update, where: str, why: str, tasks=None) -> SimilarReport:
    """similar.csv, similar.png and similar.json written into `local`, and the report."""
    across = Counter(" / ".join(sorted((p.split_a, p.split_b))) for p in found if p.across)
    write_csv(found, os.path.join(local, CSV))
    note = NO_SHEETS if config.features_column else contact_sheet(out, found, os.path.join(local, SHEET))
    notes += [note] if note else []
    report = SimilarReport(report_dir, images, config.threshold, config.top, found, sum(across.values()),
                           dict(across.most_common()), seconds, notes, os.path.exists(os.path.join(local, SHEET)),
                           search, update, where, why, tasks)
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
