"""A saved model as a scikit-learn-style classifier of image files (`catdog.load_model`), and the
`catdog predict` job: new images' features are extracted exactly as its training data's were."""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass

import numpy as np

from catdog import storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import extract, imagefolder
from catdog.heads import model_folder
from catdog.storage import Location
from catdog.store import features
from catdog.vision import convbase
from catdog.vision.images import decode_files


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str  # the predicted class ("" where the image could not be read)
    probability: float  # of the predicted class (NaN where the image could not be read)
    probabilities: dict[str, float]  # of every class, in the model's class order (empty where unreadable)
    error: str = ""  # why the image could not be read: "UnidentifiedImageError: cannot identify image file"

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]


class Model:
    """A model folder of `catdog head` or `catdog train-e2e`, ready to classify images.

    >>> model = catdog.load_model("model")
    >>> model.classes_
    array(['cats', 'dogs'], dtype=object)
    >>> model.predict(["a.jpg", "b.jpg"])
    array(['cats', 'dogs'], dtype=object)

    `predict` and `predict_proba` take image files (paths or URIs) and run the conv base in this
    process; `predictions` also takes folders, which go through the same Ray job as `catdog extract`.
    """

    def __init__(self, folder: model_folder.ModelFolder, weights: str | None = None, address: str | None = None) -> None:
        self.folder, self.address = folder, address
        self._weights = weights
        self._base: convbase.ConvBase | None = None
        if not folder.takes_images:
            self._resolved = folder.conv_weights(weights)  # checked now: before any work, for files and folders alike

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.folder.classes, dtype=object)

    def predict_proba(self, images: list[str]) -> np.ndarray:
        """(n, K) probabilities, one column per class of `classes_`; an unreadable image is an error."""
        files, folders = imagefolder.inputs(images)
        if folders:
            raise CatdogError(f"{folders[0]} is a folder: predict_proba takes image files (predictions takes folders)")
        return self._proba(files)

    def _proba(self, files: list[Location]) -> np.ndarray:
        return self._scores(self.folder.decode(files))

    def _scores(self, pixels: np.ndarray) -> np.ndarray:
        if self.folder.takes_images:
            return self.folder.predict_proba(pixels)
        return self.folder.predict_proba(self._features(pixels))

    def predict(self, images: list[str]) -> np.ndarray:
        """The most probable class of each image."""
        return self.classes_[self.predict_proba(images).argmax(axis=1)]

    def predictions(self, inputs: list[str]) -> list[Prediction]:
        """Image files and folders (every image under them, in scan order) with their probabilities;
        one for every image, those that could not be read with their `error`."""
        files, folders = imagefolder.inputs(inputs)
        results = self._predict_files(files)
        for folder in folders:
            if self.folder.takes_images:  # an end-to-end model: pixels in, no features
                results += self._predict_files(imagefolder.files_in([folder]))
            else:
                results += self._predict_folder(folder)
        return results

    def _predict_files(self, files: list[Location]) -> list[Prediction]:
        decoded = decode_files(files, self.folder.decode_config)
        P = self._scores(decoded.pixels) if decoded.ok else None
        answered = dict(zip(decoded.ok, _label([files[i] for i in decoded.ok], P, self.folder.classes)))
        answered.update((e.index, _unreadable(_name(files[e.index]), e.error, e.message)) for e in decoded.errors)
        return [answered[i] for i in range(len(files))]

    def _features(self, pixels: np.ndarray) -> np.ndarray:
        config = self._config()
        if self._base is None:
            self._base = convbase.ConvBase(self._resolved, config.embed)
        X = self._base.embed(pixels)
        return X.astype(config.dtype).astype(np.float32)  # rounded as the stored features were

    def _config(self, **fixed) -> ExtractConfig:
        return self.folder.extract_config(weights=self._weights).replace(address=self.address, **fixed)

    def _predict_folder(self, folder: Location) -> list[Prediction]:
        """A folder goes through the same Ray extraction job as `catdog extract`."""
        with tempfile.TemporaryDirectory(prefix="catdog-predict-") as out:
            extract.run(self._config(root=folder.name, out=out))
            self.folder.check(features.read_metadata(out))
            X, _, paths = features.load(out) if features.committed(out) else (None, None, [])
            unreadable = features.read_errors(out)
        results = _label([folder.join(p) for p in paths], self.folder.predict_proba(X) if len(paths) else None,
                         self.folder.classes)
        return sorted(results + [_unreadable(_name(folder.join(p)), e, m) for p, e, m in unreadable], key=lambda p: p.path)


def load_model(model_dir: str, weights: str | None = None, address: str | None = None) -> Model:
    """A model folder (path or URI); `weights` relocates the conv base weights file it was trained with."""
    return Model(model_folder.load(model_dir), weights, address)


def _label(files: list[Location], P: np.ndarray | None, classes: list[str]) -> list[Prediction]:
    if not files:
        return []
    best = P.argmax(axis=1)
    return [Prediction(_name(f), classes[k], float(row[k]), dict(zip(classes, map(float, row))))
            for f, row, k in zip(files, P, best)]


def _name(file: Location) -> str:
    return storage.display_path(str(file))  # printable and storable, whatever bytes the name holds


def _unreadable(path: str, error: str, message: str) -> Prediction:
    return Prediction(path, "", float("nan"), {}, f"{error}: {' '.join(message.split())}")


def csv_header(classes: list[str], top_k: int | None) -> list[str]:
    """path, label, probability, then p_CLASS for every class (or the top k as class and
    probability), then error: empty, or why the image could not be read (its other columns empty)."""
    if top_k:
        scores = [f"top{i}{s}" for i in range(1, top_k + 1) for s in ("", "_probability")]
    else:
        scores = [f"p_{c}" for c in classes]
    return ["path", "label", "probability", *scores, "error"]


def csv_row(p: Prediction, top_k: int | None, classes: list[str]) -> list[str]:
    if p.error:
        return [p.path, "", "", *[""] * (2 * top_k if top_k else len(classes)), p.error]
    if top_k:
        scores = [v for name, q in p.top(top_k) for v in (name, f"{q:.6f}")]
    else:
        scores = [f"{q:.6f}" for q in p.probabilities.values()]
    return [p.path, p.label, f"{p.probability:.6f}", *scores, ""]


def write_csv(predictions: list[Prediction], path: str, classes: list[str], top_k: int | None = None) -> None:
    """The CSV at `path` (a local file or a URI), whole or not at all."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(csv_header(classes, top_k))
    writer.writerows(csv_row(p, top_k, classes) for p in predictions)
    storage.resolve(path).write_bytes(text.getvalue().encode())
