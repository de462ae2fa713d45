"""The `catdog head` job: fit a head on train, select on validation, evaluate every labeled split,
save the model folder with its report and figures."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from catdog import figures, storage
from catdog.config import HeadConfig
from catdog.errors import CatdogError
from catdog.extraction import originals
from catdog.heads import metrics, model_folder
from catdog.heads.models import HEADS, predict_split
from catdog.heads.splits import FeatureSplits
from catdog.store import manifest

REPORT = "report.json"
MANY_CLASSES = 1000  # above this the dense head's last layer is large: said, not refused
MAP_POINTS = 2000  # t-SNE is quadratic-ish: the map samples at most this many images
MAP_THUMBNAILS = 12
FIGURES = ("curves.png", "confusion.png", "map.png", "wrong.png")


@dataclass(frozen=True)
class HeadReport:
    """What `catdog head` reports, as written to MODEL_DIR/report.json."""

    model_dir: str
    model: str  # logreg or dense
    classes: list[str]
    splits: dict[str, dict]  # split -> its metrics (catdog.heads.metrics.metrics)
    chosen: dict  # what validation selected (C, alpha or the best epoch)
    history: dict  # the learning curves behind curves.png
    streaming: bool  # the features did not fit the memory budget: read chunk by chunk
    holdout: dict | None  # how a folder without splits was divided (fractions, seed, counts)
    wrong: list[dict]  # the most confidently wrong images of the last split (wrong.png)
    map: dict  # the feature map's sample (map.png)
    notes: list[str]
    figures: list[str]  # the figures written, as paths under model_dir

    def lines(self) -> list[str]:
        lines = [metrics.table(self.splits, self.classes), f"chosen: {self.chosen}"]
        if self.holdout:
            counts = ", ".join(f"{k} {v}" for k, v in self.holdout["counts"].items())
            lines.append(f"splits: made here from the unsplit folder ({counts}; seed {self.holdout['seed']})")
        if self.map.get("seconds") is not None:
            lines.append(f"map.png: {self.map['points']} {self.map['split']} images, t-SNE in {self.map['seconds']} s")
        lines += [f"note: {note}" for note in self.notes]
        return lines + [f"model, report.json and figures in {self.model_dir}"]


def run(config: HeadConfig) -> HeadReport:
    """Fit, evaluate and write the model folder (a local path or a URI, written locally first)."""
    out, folder = storage.resolve(config.features), storage.resolve(config.model_dir)
    with storage.writable_folder(folder, last=model_folder.HEAD_JSON) as model_dir:
        report = _fit(config, out, model_dir)
        with open(os.path.join(model_dir, REPORT), "w") as f:
            json.dump({k: v for k, v in asdict(report).items() if k not in ("model_dir", "figures")}, f, indent=2)
        present = [name for name in FIGURES if os.path.exists(os.path.join(model_dir, name))]
    return dataclasses.replace(report, figures=[storage.join_name(config.model_dir, name) for name in present])


def _fit(config: HeadConfig, out: storage.Location, model_dir: str) -> HeadReport:
    manifest.require_complete(out)
    data = FeatureSplits(out, config.max_memory, config.validation_split, config.test_split, config.seed)
    validation = next((s for s in ("validation", "val") if s in data.splits), None)
    notes = _check(config, data, validation)
    head = HEADS[config.model](config)
    history = head.fit(data, validation)
    results = {}
    for split in [s for s in ("train", validation, "test") if s in data.splits]:
        P, y = predict_split(head, data, split)
        if (y >= 0).all():
            results[split] = (P, y)
    classes = data.classes
    by_split = {s: metrics.metrics(P, y, classes) for s, (P, y) in results.items()}
    notes += [f"{', '.join(m['absent'])} absent from {s}: not in its averages" for s, m in by_split.items() if m["absent"]]
    recorded = originals.settings(out)
    head.save(model_dir)
    holdout = asdict(data.holdout) if data.holdout else None
    model_folder.write_info(model_dir, head.kind, asdict(config), data.metadata, recorded, holdout)
    title = f"{config.model} head"
    figures.plot_curves(history, os.path.join(model_dir, "curves.png"), title)
    last = "test" if "test" in results else list(results)[-1]
    figures.plot_confusion(by_split[last]["confusion_matrix"], classes, os.path.join(model_dir, "confusion.png"),
                           f"{title}, {last}")
    wrong, note = _wrong_grid(model_dir, data, recorded, last, *results[last], classes)
    feature_map, map_note = _feature_map(model_dir, data, recorded, "test" if "test" in results else validation or "train",
                                         config.seed)
    notes += [n for n in (note, map_note) if n]
    return HeadReport(model_dir=config.model_dir, model=config.model, classes=classes, splits=by_split,
                      chosen=history["chosen"], history={k: v for k, v in history.items() if k != "chosen"},
                      streaming=data.streaming, holdout=holdout, wrong=wrong, map=feature_map, notes=notes, figures=[])


def _check(config: HeadConfig, data: FeatureSplits, validation: str | None) -> list[str]:
    """Refuse what cannot be trained, in one line each; return notes on what is missing but allowed."""
    where = config.features
    if "train" not in data.splits:
        raise CatdogError(f"no split 'train' in {where} (it has: {', '.join(data.splits)}); the head trains on "
                          "ROOT/train/CLASS/* images, or splits ROOT/CLASS/* itself")
    if not data.classes:
        raise CatdogError(f"the train images of {where} have no labels (no class folders): "
                          "the head trains on ROOT/train/CLASS/* images")
    if len(data.classes) < 2:
        raise CatdogError(f"only one class ({data.classes[0]}) in {where}: a classifier needs at least two class folders")
    labels = data.labels("train")
    missing = [c for k, c in enumerate(data.classes) if k not in set(labels.tolist())]
    if missing:
        raise CatdogError(f"no train images of class {', '.join(missing)} in {where}: every class needs training images")
    notes = []
    if validation is None:
        notes.append("no validation split: nothing selected on validation (default regularisation, last epoch)")
    if "test" not in data.splits:
        notes.append("no test split: reporting train and validation only")
    if len(data.classes) > MANY_CLASSES and config.model == "dense":
        notes.append(f"{len(data.classes)} classes: the dense head's last layer holds "
                     f"{config.units * len(data.classes):,} weights")
    return notes


def _wrong_grid(model_dir: str, data: FeatureSplits, recorded: dict | None, split: str,
                P: np.ndarray, y: np.ndarray, classes: list[str]) -> tuple[list[dict], str | None]:
    """wrong.png: the most confidently wrong images of `split`, decoded as extraction decoded them."""
    picks = metrics.most_confidently_wrong(P, y)
    if len(picks) == 0:
        return [], f"no wrong predictions on {split}: no grid of wrong images"
    paths = data.paths(split)  # the paths alone: the features are not read again
    predicted = P.argmax(axis=1)
    wrong = [{"path": paths[i], "predicted": classes[predicted[i]], "probability": float(P[i, predicted[i]]),
              "label": classes[y[i]]} for i in picks]
    pictures, note = originals.decode(recorded, [w["path"] for w in wrong])
    if note:
        return wrong, f"{note}: no grid of wrong images"
    captions = [f"{os.path.basename(wrong[i]['path'])}\n{wrong[i]['predicted']} {wrong[i]['probability']:.3f}, "
                f"true {wrong[i]['label']}" for i in pictures]
    figures.plot_wrong(list(pictures.values()), captions, os.path.join(model_dir, "wrong.png"),
                       f"most confidently wrong, {split}")
    return wrong, None


def _feature_map(model_dir: str, data: FeatureSplits, recorded: dict | None, split: str,
                 seed: int) -> tuple[dict, str | None]:
    """map.png: PCA to 50 dimensions, then t-SNE to 2, of at most MAP_POINTS images of `split`."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    paths = data.paths(split)  # the rows' order, without their features
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(paths), size=min(len(paths), MAP_POINTS), replace=False))
    if len(keep) < 5:
        return {"split": split, "points": int(len(keep))}, f"{split} has {len(keep)} images: no map"
    X, y = _rows(data, split, keep)
    started = time.perf_counter()
    reduced = PCA(n_components=min(50, len(keep) - 1, X.shape[1]), random_state=seed).fit_transform(X)
    points = TSNE(perplexity=min(30.0, (len(keep) - 1) / 3), init="pca", random_state=seed).fit_transform(reduced)
    seconds = time.perf_counter() - started
    shown = rng.choice(len(keep), size=min(MAP_THUMBNAILS, len(keep)), replace=False)
    pictures, note = originals.decode(recorded, [paths[keep[i]] for i in shown])
    thumbnails = [(int(shown[i]), picture) for i, picture in pictures.items()]
    figures.plot_map(points, y, data.classes, thumbnails, os.path.join(model_dir, "map.png"),
                     f"{split} features: PCA to {reduced.shape[1]} then t-SNE, {len(keep)} images")
    return ({"split": split, "points": int(len(keep)), "seconds": round(seconds, 2)},
            f"{note}: map.png without thumbnails" if note else None)


def _rows(data: FeatureSplits, split: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The features and labels of some rows of a split, chunk by chunk: the sample, never the whole
    split, is held (in memory mode the chunk is the cached split itself)."""
    X, y, start = [], [], 0
    for chunk, labels in data.chunks(split):
        mine = rows[(rows >= start) & (rows < start + len(labels))] - start
        X.append(chunk[mine])
        y.append(labels[mine])
        start += len(labels)
    return np.concatenate(X), np.concatenate(y)
