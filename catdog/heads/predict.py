"""The `catdog predict` job: classify new images with a saved model, extracting their features
exactly as its training data was."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass

import numpy as np

from catdog.config import ExtractConfig
from catdog.extraction import convbase, extract, imagefolder
from catdog.heads import model_folder
from catdog.storage import Location
from catdog.store import features


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str  # the predicted class
    probability: float  # of the predicted class
    probabilities: dict[str, float]  # of every class, in the model's class order

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]


def predict(model_dir: str, inputs: list[str], weights: str | None = None, address: str | None = None) -> list[Prediction]:
    model = model_folder.load(model_dir)
    files, folders = imagefolder.inputs(inputs)
    if model.takes_images:  # an end-to-end model: pixels in, no features
        everything = files + imagefolder.files_in(folders)
        return _label(everything, model.predict_proba(model.decode(everything)), model.classes)
    config = model.extract_config(weights=weights).replace(address=address)
    resolved = model.conv_weights(weights)  # before any work, for files and folders alike
    results: list[Prediction] = []
    if files:
        X = convbase.ConvBase(resolved, config.embed).embed(model.decode(files))
        X = X.astype(config.dtype).astype(np.float32)  # rounded as the stored features were
        results += _label(files, model.predict_proba(X), model.classes)
    for folder in folders:
        results += _predict_folder(folder, config, model)
    return results


def _predict_folder(folder: Location, config: ExtractConfig, model: model_folder.ModelFolder) -> list[Prediction]:
    """A folder goes through the same Ray extraction job as `catdog extract`."""
    with tempfile.TemporaryDirectory(prefix="catdog-predict-") as out:
        extract.run(config.replace(root=folder.name, out=out))
        model.check(features.read_metadata(out))
        X, _, paths = features.load(out)
    return _label([folder.join(p) for p in paths], model.predict_proba(X), model.classes)


def _label(files: list[Location], P: np.ndarray, classes: list[str]) -> list[Prediction]:
    best = P.argmax(axis=1)
    return [Prediction(str(f), classes[k], float(row[k]), dict(zip(classes, map(float, row))))
            for f, row, k in zip(files, P, best)]


def csv_header(classes: list[str], top_k: int | None) -> list[str]:
    """path, label, probability, then p_CLASS for every class, or the top k as class and probability."""
    if top_k:
        return ["path", "label", "probability"] + [f"top{i}{s}" for i in range(1, top_k + 1) for s in ("", "_probability")]
    return ["path", "label", "probability"] + [f"p_{c}" for c in classes]


def csv_row(p: Prediction, top_k: int | None) -> list[str]:
    row = [p.path, p.label, f"{p.probability:.6f}"]
    if top_k:
        return row + [v for name, q in p.top(top_k) for v in (name, f"{q:.6f}")]
    return row + [f"{q:.6f}" for q in p.probabilities.values()]


def write_csv(predictions: list[Prediction], path: str, top_k: int | None = None) -> None:
    classes = list(predictions[0].probabilities) if predictions else []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header(classes, top_k))
        writer.writerows(csv_row(p, top_k) for p in predictions)
