"""The `catdog report` job: what catdog found in an OUT as a static site — an overview, label issues
and outliers each beside their nearest images, near-duplicate pairs (leakage across splits marked),
a model's metrics and most confidently wrong images with Grad-CAM, the feature map, and the images
that could not be read.

The site is `index.html`, its script and style, `data/*.js` (one file per page, loaded by a script
tag when the page is opened: a browser reads them from disk, where it refuses `fetch`) and
`thumbs/*.jpg`. Links are relative: it opens with a double click, from any static web server, or
from a bucket. Nothing is fetched from the internet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from catdog import storage
from catdog.config import AuditConfig, ReportConfig
from catdog.errors import CatdogError
from catdog.extraction import executor, listing
from catdog.html import projection, thumbnails
from catdog.insight import audit as audit_job
from catdog.insight import embeddings, neighbours, similar
from catdog.store import features, manifest

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
DEFAULT_DIR = "report"
RAY_THUMBNAILS = 4096  # new thumbnails beyond which `auto` makes them in Ray tasks
WRONG = 24  # most confidently wrong images on the model page (each with its Grad-CAM)
PAGES = ("overview", "label_issues", "outliers", "duplicates", "model", "map", "unreadable")


@dataclass(frozen=True)
class ReportResult:
    report_dir: str
    index: str  # the page to open
    counts: dict[str, int]  # rows on each page
    thumbnails: int  # images with a thumbnail
    seconds: float
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        pages = ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in self.counts.items())
        return [f"report      {self.index}", f"pages       {pages}",
                f"thumbnails  {self.thumbnails:,}", *(f"note        {n}" for n in self.notes),
                f"time        {self.seconds:.1f} s"]


def run(config: ReportConfig) -> ReportResult:
    started = time.perf_counter()
    out = storage.resolve(config.features)
    foreign = config.features_column is not None  # another tool's embeddings: no manifest, no extraction
    recorded = None if foreign else manifest.read(out)
    if recorded is None and not foreign:
        raise CatdogError(f"{out} holds no catdog output (no manifest.json): run `catdog extract` first "
                          "(or give --features-column for another tool's embeddings)")
    data = embeddings.load(config)
    columns = {k: getattr(config, k) for k in ("features_column", "path_column", "label_column", "split_column")}
    audit_dir = similar.beside(out, config).join(audit_job.DEFAULT_DIR)
    notes: list[str] = []
    now = audit_job.source_state(out, config, len(data.paths))
    if _audited(audit_dir) != now:  # the report shows the audit of these features as they are: run it when missing or old
        audit_job.run(AuditConfig(features=config.features, **columns))
    issues = _read_csv(audit_dir.join(audit_job.LABEL_ISSUES))
    outliers = _read_csv(audit_dir.join(audit_job.OUTLIERS))
    duplicates = _read_csv(audit_dir.join(audit_job.DUPLICATES))
    audit_record = json.loads(audit_dir.join(audit_job.REPORT).read_bytes())
    row_of = {p: i for i, p in enumerate(data.paths.tolist())}
    flagged = sorted({row_of[r["path"]] for r in issues + outliers if r["path"] in row_of})
    near = _neighbours(data.X, flagged, config.neighbours)
    label = lambda i: data.classes[data.y[i]] if data.y[i] >= 0 else ""  # noqa: E731
    model_page, shown_extra = _model_page(config, data, notes) if config.model else ({"absent": "no --model given"}, [])
    sample = projection.sample(data.y, config.map_points, config.seed)
    xy = projection.project(data.X[sample], config.seed) if len(sample) else np.zeros((0, 2))
    shown = ({r["path"] for r in issues + outliers} | {data.paths[j] for i in flagged for j, _ in near.get(i, [])}
             | {r["path_a"] for r in duplicates} | {r["path_b"] for r in duplicates} | set(shown_extra)
             | set(data.paths[sample].tolist()))
    report_dir = storage.resolve(config.report_dir) if config.report_dir else similar.beside(out, config).join(DEFAULT_DIR)
    with storage.writable_folder(report_dir, last="index.html") as local:
        folder = os.path.join(local, "thumbs")
        on_ray = _thumbnails_on_ray(config, len(thumbnails.missing(shown, folder)))
        local_disk = not config.shared_fs and (recorded is None or storage.resolve(recorded.config["root"]).is_local)
        thumbs, note = thumbnails.make(recorded.config if recorded else None, sorted(shown), folder, on_ray,
                                       config.address, local_disk)
        if note:
            notes.append(f"no thumbnails: {note}")
        thumb = lambda p: thumbnails_path(thumbs, p)  # noqa: E731

        def neighbour_strip(path: str) -> list:
            i = row_of.get(path)
            return [[data.paths[j], label(j), round(c, 4), thumb(data.paths[j])] for j, c in near.get(i, [])]

        pages = {
            "label_issues": {"columns": ["image", "path", "split", "given", "suggested", "self_confidence", "rank"],
                             "rows": [[thumb(r["path"]), r["path"], r["split"], r["given"], r["suggested"],
                                       float(r["self_confidence"]), int(r["rank"]), neighbour_strip(r["path"])]
                                      for r in issues]},
            "outliers": {"columns": ["image", "path", "split", "label", "distance", "score", "rank"],
                         "rows": [[thumb(r["path"]), r["path"], r["split"], r["label"], float(r["distance"]),
                                   float(r["score"]), int(r["rank"]), neighbour_strip(r["path"])] for r in outliers]},
            "duplicates": {"columns": ["image_a", "path_a", "split_a", "image_b", "path_b", "split_b", "cosine",
                                       "across_splits"],
                           "rows": [[thumb(r["path_a"]), r["path_a"], r["split_a"], thumb(r["path_b"]), r["path_b"],
                                     r["split_b"], float(r["cosine"]), int(r["across_splits"])] for r in duplicates]},
            "map": {"columns": ["x", "y", "label", "split", "path", "image"],
                    "rows": [[round(float(x), 4), round(float(y), 4), label(i), str(data.splits[i]), data.paths[i],
                              thumb(data.paths[i])] for (x, y), i in zip(xy, sample)]},
            "unreadable": {"columns": ["path", "error", "message"],
                           "rows": [] if foreign else [list(e) for e in features.read_errors(out)]},
        }
        model_page = _with_thumbnails(model_page, thumb)
        if model_page.get("gradcam") and model_page["rows"]:
            if recorded:
                _gradcam(config, recorded.config, model_page, local, notes)
            else:
                notes.append("no Grad-CAM: another tool's embeddings do not say how to read their images for the model")
        pages["model"] = model_page
        pages["overview"] = _overview(out, recorded, data, audit_record, pages, notes)
        os.makedirs(os.path.join(local, "data"), exist_ok=True)
        for name, content in pages.items():
            _write_page(os.path.join(local, "data", f"{name}.js"), name, content)
        for asset in os.listdir(ASSETS):
            shutil.copy(os.path.join(ASSETS, asset), os.path.join(local, asset))
    counts = {name: len(pages[name].get("rows", [])) for name in ("label_issues", "outliers", "duplicates", "map",
                                                                    "unreadable")}
    counts["model wrong"] = len(model_page.get("rows", []))
    return ReportResult(str(report_dir), str(report_dir.join("index.html")), counts, len(thumbs),
                        round(time.perf_counter() - started, 2), notes)


def _thumbnails_on_ray(config: ReportConfig, new: int) -> bool:
    """Ray for many new thumbnails, or where a cluster is named or already joined; else threads here."""
    if config.executor != "auto":
        return config.executor == "ray"
    return new > RAY_THUMBNAILS or bool(config.address or os.environ.get("RAY_ADDRESS")) or executor.joined_ray()


def thumbnails_path(made: dict[str, str], path: str) -> str:
    """The thumbnail's link relative to index.html, or "" where the image could not be read here."""
    return f"thumbs/{made[path]}" if path in made else ""


def _audited(audit_dir: storage.Location) -> dict | None:
    """What the audit in `audit_dir` was made of, None where there is none."""
    record = audit_dir.join(audit_job.REPORT)
    return json.loads(record.read_bytes()).get("source") if record.exists() else None


def _read_csv(location: storage.Location) -> list[dict]:
    if not location.exists():
        return []
    return list(csv.DictReader(io.StringIO(location.read_bytes().decode())))


def _neighbours(X: np.ndarray, rows: list[int], k: int) -> dict[int, list[tuple[int, float]]]:
    """Each flagged row's k nearest other rows by cosine (an exact search of those rows alone)."""
    if not rows or len(X) < 2:
        return {}
    base = neighbours.unit(X)
    indices, similarity = neighbours.exact(base[rows], base, min(k + 1, len(X)))
    found = {}
    for row, idx, sim in zip(rows, indices, similarity):
        found[row] = [(int(j), float(c)) for j, c in zip(idx, sim) if j != row and j >= 0][:k]
    return found


def _model_page(config: ReportConfig, data, notes: list[str]) -> tuple[dict, list[str]]:
    """The model's metrics (its report.json), and its most confidently wrong images among the stored
    labelled features: predicted here, with the model, on the stored vectors."""
    from catdog.heads import model_folder

    folder = model_folder.load(config.model)
    location = storage.resolve(config.model)
    report = json.loads(location.join("report.json").read_bytes()) if location.join("report.json").exists() else {}
    page = {"model": config.model, "kind": folder.info["kind"], "classes": folder.classes,
            "splits": report.get("splits", {}), "rows": [], "columns": ["image", "path", "split", "given", "predicted",
                                                                          "confidence"]}
    if folder.takes_images:
        notes.append("an end-to-end model classifies images, not stored features: no wrong images listed")
        return page, []
    folder.check(data.metadata)
    labelled = np.flatnonzero(data.y >= 0)
    if not len(labelled):
        return page, []
    P = folder.predict_proba(data.X[labelled])
    predicted, confidence = P.argmax(axis=1), P.max(axis=1)
    wrong = np.flatnonzero(predicted != data.y[labelled])
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:WRONG]
    page["rows"] = [["", str(data.paths[labelled[w]]), str(data.splits[labelled[w]]), data.classes[data.y[labelled[w]]],
                     folder.classes[predicted[w]], round(float(confidence[w]), 4)] for w in wrong]
    page["gradcam"] = True
    return page, [r[1] for r in page["rows"]]


def _with_thumbnails(page: dict, thumb) -> dict:
    for row in page.get("rows", []):
        row[0] = thumb(row[1])
    return page


def _gradcam(config: ReportConfig, recorded: dict, page: dict, local: str, notes: list[str]) -> None:
    """Grad-CAM heatmaps of the wrong images (OUT's extraction settings `recorded` say where they
    are), where the images can be read here."""
    from catdog.heads import explain

    root = storage.resolve(listing.recorded_config(recorded).root)
    files = [str(root.join(r[1])) for r in page["rows"]]
    readable = [f for f in files if storage.resolve(f).exists()]
    if not readable:
        notes.append("no Grad-CAM: the images are not readable here")
        return
    made = explain.explain(config.model, readable, os.path.join(local, "gradcam"))
    by_file = dict(zip(readable, made))
    for row, file in zip(page["rows"], files):
        cam = by_file.get(file)
        row.append(f"gradcam/{os.path.basename(cam.figure)}" if cam is not None and cam.figure else "")
    page["columns"] = page["columns"] + ["gradcam"]


def _overview(out, recorded, data, audit_record: dict, pages: dict, notes: list[str]) -> dict:
    meta = recorded.features if recorded else {"backbone": "another tool's embeddings", "pooling": "",
                                               "feature_dim": int(data.X.shape[1]), **(data.metadata or {})}
    splits = sorted(set(data.splits.tolist()))
    counts = {s: {c: int(((data.splits == s) & (data.y == k)).sum()) for k, c in enumerate(data.classes)}
              for s in splits}
    return {
        "out": str(out), "images": int(len(data.paths)), "errors": len(pages["unreadable"]["rows"]),
        "classes": list(data.classes), "splits": splits, "counts": counts,
        "features": {k: meta.get(k) for k in ("backbone", "pooling", "input_size", "preprocess", "feature_dim", "dtype",
                                                "precision", "weights", "catdog_version")},
        "last_run": {"updated": recorded.updated, "generation": recorded.generation, "cost": recorded.cost,
                     "timeline": recorded.timeline} if recorded else {"updated": "", "generation": "-", "cost": {}},
        "audit": {k: audit_record.get(k) for k in ("label_issues", "outliers", "duplicates", "across_splits", "health")},
        "notes": notes,
    }


def _write_page(path: str, name: str, content) -> None:
    """A page's data as a script (a browser reads scripts from disk where it refuses fetch)."""
    text = json.dumps(content, separators=(",", ":"), default=_plain)
    with open(path, "w") as f:
        f.write(f"catdog.loaded({json.dumps(name)},{text});\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
