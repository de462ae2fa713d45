"""Classify new images with a saved head, extracting their features exactly as its training data was."""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from catdog import dataset, extract, features, head, images, model, storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError


@dataclass(frozen=True)
class Prediction:
    path: str
    probability: float  # of the second class (dogs)
    label: str


def extract_config(saved: head.SavedHead, weights: str | None = None) -> ExtractConfig:
    """The extraction settings recorded with the head; `weights` relocates the weights file."""
    meta, recorded = saved.feature_metadata, saved.info.get("extract") or {}
    return ExtractConfig(
        root="", out="",
        weights=weights or recorded.get("weights") or meta["weights"]["source"],
        seed=meta["weights"].get("seed", 0),
        image_size=meta["input_size"][0],
        batch_size=recorded.get("batch_size", 32),
        preprocess=meta["preprocess"],
        interpolation=meta["interpolation"],
        dtype=meta["dtype"],
        precision=meta["precision"],
        max_pixels=recorded.get("max_pixels", ExtractConfig.max_pixels),
        progress=False,
    )


def predict(model_dir: str, inputs: list[str], weights: str | None = None, address: str | None = None) -> list[Prediction]:
    saved = head.load(model_dir)
    config = extract_config(saved, weights).replace(address=address)
    classes = saved.feature_metadata.get("classes") or ["0", "1"]
    missing = [i for i in inputs if not os.path.exists(i) and not storage.is_uri(i)]
    if missing:
        raise CatdogError(f"not found: {', '.join(missing)}")
    files = [i for i in inputs if os.path.isfile(i)]
    folders = [i for i in inputs if i not in files]
    results: list[Prediction] = []
    if saved.takes_images:  # an end-to-end model: pixels in, no features
        paths = files + [storage.join(f, p) for f in folders for p in dataset.scan(f).paths]
        return _label(paths, saved.predict_proba(_decode_files(paths, config)), classes)
    if files:
        X = _embed_files(files, config, saved)
        results += _label(files, saved.predict_proba(X), classes)
    for folder in folders:
        results += _predict_folder(folder, config, saved, classes)
    return results


def _embed_files(files: list[str], config: ExtractConfig, saved: head.SavedHead) -> np.ndarray:
    """A few images in this process: no cluster, the same decode and conv base as the Ray path."""
    weights = _checked_weights(config, saved)
    X = model.ConvBase(weights.data, config).embed(_decode_files(files, config))
    return X.astype(config.dtype).astype(np.float32)  # round as the stored features were rounded


def _decode_files(files: list[str], config: ExtractConfig) -> np.ndarray:
    pixels = []
    for path in files:
        try:
            with open(path, "rb") as f:
                pixels.append(images.decode(f.read(), config.image_size, config.interpolation, config.max_pixels))
        except Exception as exc:  # an unreadable image is the user's input, not a crash
            raise CatdogError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    return np.stack(pixels)


def _checked_weights(config: ExtractConfig, saved: head.SavedHead) -> model.Weights:
    weights = model.resolve_weights(config)
    want = {k: v for k, v in saved.feature_metadata["weights"].items() if k != "file"}
    got = {k: v for k, v in weights.identity.items() if k != "file"}
    if want != got:
        raise CatdogError(f"weights {config.weights} are not the ones the model was trained on ({got} vs {want})")
    return weights


def _predict_folder(folder: str, config: ExtractConfig, saved: head.SavedHead, classes: list[str]) -> list[Prediction]:
    """A folder goes through the same Ray extraction job as `catdog extract`."""
    with tempfile.TemporaryDirectory(prefix="catdog-predict-") as out:
        extract.run(config.replace(root=folder, out=out))
        saved.check(features.read_metadata(out))
        X, _, paths = features.load(out)
    return _label([storage.join(folder, p) for p in paths], saved.predict_proba(X), classes)


def _label(paths: list[str], p: np.ndarray, classes: list[str]) -> list[Prediction]:
    return [Prediction(path, float(q), classes[int(q >= 0.5)]) for path, q in zip(paths, p)]


def write_csv(predictions: list[Prediction], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "probability", "label"])
        writer.writerows((p.path, f"{p.probability:.6f}", p.label) for p in predictions)
