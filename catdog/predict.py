"""The `catdog predict` job: classify new images with a saved model, extracting their features
exactly as its training data was."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass

import numpy as np

from catdog import convbase, extract, features, imagefolder, saved, storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.images import decode_files
from catdog.storage import Location


@dataclass(frozen=True)
class Prediction:
    path: str
    probability: float  # of the second class (dogs)
    label: str


def predict(model_dir: str, inputs: list[str], weights: str | None = None, address: str | None = None) -> list[Prediction]:
    model = saved.load(model_dir)
    located = [storage.resolve(i) for i in inputs]
    missing = [str(loc) for loc in located if not loc.exists()]
    if missing:
        raise CatdogError(f"not found: {', '.join(missing)}")
    files = [loc for loc in located if not loc.is_dir()]
    folders = [loc for loc in located if loc.is_dir()]
    if model.takes_images:  # an end-to-end model: pixels in, no features
        everything = files + [f.join(p) for f in folders for p in imagefolder.scan(f).paths]
        return _label(everything, model.predict_proba(_pixels(everything, model)), model.classes)
    config = model.extract_config(weights=weights).replace(address=address)
    resolved = _checked_weights(config, model)  # before any work, for files and folders alike
    results: list[Prediction] = []
    if files:
        X = convbase.ConvBase(resolved.data, config.embed).embed(_pixels(files, model))
        X = X.astype(config.dtype).astype(np.float32)  # rounded as the stored features were
        results += _label(files, model.predict_proba(X), model.classes)
    for folder in folders:
        results += _predict_folder(folder, config, model)
    return results


def _pixels(files: list[Location], model: saved.SavedModel) -> np.ndarray:
    decoded = decode_files(files, model.decode_config)
    if decoded.errors:  # an unreadable image named by the user is a mistake to report, not to skip
        e = decoded.errors[0]
        raise CatdogError(f"cannot read image {files[e.index]}: {e.error}: {e.message}")
    return decoded.pixels


def _checked_weights(config: ExtractConfig, model: saved.SavedModel) -> convbase.Weights:
    weights = convbase.resolve_weights(config.weights, config.seed, config.image_size)
    if not convbase.same_weights(weights.identity, model.feature_metadata["weights"]):
        raise CatdogError(f"weights {config.weights} are not the ones the model was trained on "
                          f"({weights.identity} vs {model.feature_metadata['weights']})")
    return weights


def _predict_folder(folder: Location, config: ExtractConfig, model: saved.SavedModel) -> list[Prediction]:
    """A folder goes through the same Ray extraction job as `catdog extract`."""
    with tempfile.TemporaryDirectory(prefix="catdog-predict-") as out:
        extract.run(config.replace(root=folder.name, out=out))
        model.check(features.read_metadata(out))
        X, _, paths = features.load(out)
    return _label([folder.join(p) for p in paths], model.predict_proba(X), model.classes)


def _label(files: list[Location], p: np.ndarray, classes: list[str]) -> list[Prediction]:
    return [Prediction(str(f), float(q), classes[int(q >= 0.5)]) for f, q in zip(files, p)]


def write_csv(predictions: list[Prediction], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "probability", "label"])
        writer.writerows((p.path, f"{p.probability:.6f}", p.label) for p in predictions)
