"""The `catdog head` job: fit a head on train, select on validation, evaluate every labeled split,
save the model folder with its report and figures."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np

from catdog import features, figures, manifest, metrics, saved, storage
from catdog.config import ExtractConfig, HeadConfig
from catdog.errors import CatdogError
from catdog.heads import HEADS, FeatureSplits, predict_split
from catdog.images import decode_files

REPORT = "report.json"


def run(config: HeadConfig) -> dict:
    """Fit, evaluate and write the model folder (a local path or a URI, written locally first)."""
    out, model_folder = storage.resolve(config.features), storage.resolve(config.model_dir)
    with storage.writable_folder(model_folder) as model_dir:
        return _fit(config, out, model_dir)


def _fit(config: HeadConfig, out: storage.Location, model_dir: str) -> dict:
    data = FeatureSplits(out, config.max_memory)
    notes = []
    if "train" not in data.splits:
        raise CatdogError(f"no split 'train' in {config.features} (it has: {', '.join(data.splits)}); "
                          "the head trains on ROOT/train/CLASS/* images")
    validation = next((s for s in ("validation", "val") if s in data.splits), None)
    if validation is None:
        notes.append("no validation split: nothing selected on validation (default regularisation, last epoch)")
    if "test" not in data.splits:
        notes.append("no test split: reporting train and validation only")
    head = HEADS[config.model](config)
    history = head.fit(data, validation)
    results = {}
    for split in [s for s in ("train", validation, "test") if s in data.splits]:
        p, y = predict_split(head, data, split)
        if (y >= 0).all():
            results[split] = (p, y)
    by_split = {s: metrics.metrics(p, y) for s, (p, y) in results.items()}
    extract_settings = (manifest.read(out) or {}).get("config")
    head.save(model_dir)
    saved.write_info(model_dir, head.kind, asdict(config), data.metadata, extract_settings)
    title = f"{config.model} head"
    classes = data.metadata.get("classes") or ["0", "1"]
    figures.plot_curves(history, os.path.join(model_dir, "curves.png"), title)
    last = "test" if "test" in results else list(results)[-1]
    figures.plot_confusion(by_split[last]["confusion_matrix"], classes, os.path.join(model_dir, "confusion.png"),
                           f"{title}, {last}")
    wrong, note = _wrong_grid(model_dir, out, extract_settings, last, *results[last], classes)
    notes += [note] if note else []
    summary = {"model": config.model, "streaming": data.streaming, "chosen": history["chosen"], "splits": by_split,
               "history": {k: v for k, v in history.items() if k != "chosen"}, "wrong": wrong, "notes": notes}
    with open(os.path.join(model_dir, REPORT), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _wrong_grid(model_dir: str, out: storage.Location, extract_settings: dict | None, split: str,
                p: np.ndarray, y: np.ndarray, classes: list[str]) -> tuple[list[dict], str | None]:
    """wrong.png: the most confidently wrong images of `split`, decoded as extraction decoded them."""
    picks = metrics.most_confidently_wrong(p, y)
    if len(picks) == 0:
        return [], f"no wrong predictions on {split}: no grid of wrong images"
    paths = features.read_paths(out, split)  # the paths alone: the features are not read again
    wrong = [{"path": paths[i], "probability": float(p[i]), "label": classes[y[i]]} for i in picks]
    if not extract_settings:
        return wrong, "no manifest.json beside the features: no grid of wrong images"
    recorded = ExtractConfig(**{k: v for k, v in extract_settings.items() if k in ExtractConfig.__dataclass_fields__})
    root = storage.resolve(recorded.root)
    try:
        decoded = decode_files([root.join(w["path"]) for w in wrong], recorded.decode)
    except Exception as exc:  # the image folder may live where this machine cannot reach (a cluster's disk)
        return wrong, f"images under {root} not reachable here ({type(exc).__name__}): no grid of wrong images"
    if not decoded.ok:
        return wrong, f"images under {root} not readable here: no grid of wrong images"
    shown = [wrong[i] for i in decoded.ok]
    captions = [f"{os.path.basename(w['path'])}\np({classes[-1]})={w['probability']:.3f}, true {w['label']}" for w in shown]
    figures.plot_wrong(list(decoded.pixels), captions, os.path.join(model_dir, "wrong.png"),
                       f"most confidently wrong, {split}")
    return wrong, None
