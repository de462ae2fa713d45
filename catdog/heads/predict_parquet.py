"""`catdog predict MODEL ROOT --out DIR`: a folder, bucket or table of any size classified by
extraction's own job (`catdog.extraction.extract`: the Ray actors or this process, resumable,
exactly once, incremental), the model's head applied to the features in the actors that make them,
its answers written as Parquet (`catdog.store.predictions`) and never the features."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from catdog import storage
from catdog.config import PredictConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.heads import model_folder


class ShippedHead:
    """A model folder's head, sent to the actors as its files' bytes and loaded there once, through
    the same checked loader as everywhere (`model_folder.load`): features in, probabilities out."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self._folder: model_folder.ModelFolder | None = None

    def __getstate__(self) -> dict:
        return {"files": self.files}

    def __setstate__(self, state: dict) -> None:
        self.files, self._folder = state["files"], None

    @property
    def digest(self) -> str:
        sha = hashlib.sha256()
        for name in sorted(self.files):
            sha.update(name.encode() + b"\0" + self.files[name])
        return sha.hexdigest()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self._folder is None:
            with tempfile.TemporaryDirectory(prefix="catdog-head-") as local:
                for name, data in self.files.items():
                    with open(os.path.join(local, name), "wb") as f:
                        f.write(data)
                self._folder = model_folder.load(local)
        # As `catdog.load_model` predicts: the features as stored (rounded to their dtype), in float32.
        return self._folder.predict_proba(np.asarray(X, dtype=np.float32)).astype(np.float32)


def run(config: PredictConfig) -> extract.ExtractResult:
    folder = model_folder.load(config.model_dir)
    if folder.takes_images:
        raise CatdogError(f"{config.model_dir} is an end-to-end model: its predictions go to a CSV (--out FILE.csv); "
                          "a Parquet folder takes a head of `catdog head`")
    folder.conv_weights(config.weights)  # the weights it was trained on, checked before any work
    location = storage.resolve(config.model_dir)
    head = ShippedHead({name: location.join(name).read_bytes() for name in (model_folder.HEAD_JSON, folder.model.file)})
    model = {"kind": folder.info["kind"], "classes": list(folder.classes), "sha256": head.digest}
    answering = extract.Answering(head, model, tuple(folder.classes))
    settings = folder.extract_config(weights=config.weights).replace(**config.extract_options())
    return extract.run(settings, answering)
