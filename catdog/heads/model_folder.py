"""The model folder, a format of its own: what `catdog head` and `catdog train-e2e` write and
`catdog predict` reads.

  head.json     kind, training settings, the feature metadata the model learned from, and the
                extraction settings that make such features from images
  head.skops    a logreg head (scikit-learn, loaded trusting only scikit-learn and numpy types)
  head.keras    a dense head (Keras, safe mode)
  model.keras   an end-to-end model: pixels in, preprocessing inside
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from catdog import storage
from catdog.config import DecodeConfig, ExtractConfig, HeadConfig, ImageSettings
from catdog.errors import CatdogError
from catdog.heads.models import HEADS, DenseHead, LogRegHead, class_columns
from catdog.vision import backbones, convbase, layers
from catdog.vision.images import decode_files

HEAD_JSON = "head.json"
PIXEL_MODEL = "model.keras"  # an end-to-end model, preprocessing inside
# Feature settings a head depends on: features made any other way mean something else.
PINNED = ("model", "backbone", "pooling", "weights", "input_size", "preprocess", "interpolation", "jpeg_draft",
          "feature_dim", "flatten_order", "dtype")
E2E_KIND = "e2e"


class PixelModel:
    """A model from `catdog train-e2e`: conv base and head in one, fed raw pixels, not features."""

    kind = E2E_KIND
    file = PIXEL_MODEL

    def __init__(self, model) -> None:
        self.model = model

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        return class_columns(self.model.predict(pixels.astype(np.float32), batch_size=32, verbose=0))

    @classmethod
    def load(cls, model_dir: str) -> "PixelModel":
        import keras

        layers.shear_layer()  # registers the one custom layer the model holds
        return cls(keras.saving.load_model(os.path.join(model_dir, cls.file), safe_mode=True))


@dataclass(frozen=True)
class ModelFolder:
    """A model loaded back with the feature and extraction settings it was trained with."""

    model: LogRegHead | DenseHead | PixelModel
    info: dict

    @property
    def takes_images(self) -> bool:
        return isinstance(self.model, PixelModel)

    @property
    def feature_metadata(self) -> dict:
        return self.info["features"]

    @property
    def classes(self) -> list[str]:
        return self.feature_metadata.get("classes") or ["0", "1"]

    def extract_config(self, root: str = "", out: str = "", weights: str | None = None) -> ExtractConfig:
        """The extraction settings recorded with the model; `weights` relocates the weights file."""
        meta, recorded = self.feature_metadata, self.info.get("extract") or {}
        image = ImageSettings.from_metadata(meta, recorded, weights)
        return ExtractConfig(root=root, out=out, **image, dtype=meta["dtype"], precision=meta["precision"],
                             batch_size=recorded.get("batch_size"), progress=False)

    @property
    def decode_config(self) -> DecodeConfig:
        return self.extract_config().decode

    def decode(self, files: list[storage.Location]) -> np.ndarray:
        """The images as this model's features were decoded; an unreadable one is the user's to fix."""
        decoded = decode_files(files, self.decode_config)
        if decoded.errors:
            e = decoded.errors[0]
            raise CatdogError(f"cannot read image {files[e.index]}: {e.error}: {e.message}")
        return decoded.pixels

    def conv_weights(self, weights: str | None = None) -> convbase.Weights:
        """The conv base weights this model's features came from (`weights` relocates the file),
        refused if they are other numbers."""
        config = self.extract_config(weights=weights)
        resolved = convbase.resolve_weights(config.weights, config.seed, config.image_size, config.backbone, config.pooling)
        if not convbase.same_weights(resolved.identity, self.feature_metadata["weights"]):
            raise CatdogError(f"weights {config.weights} are not the ones the model was trained on "
                              f"({resolved.identity} vs {self.feature_metadata['weights']})")
        return resolved

    def check(self, metadata: dict) -> None:
        """Refuse features made with other settings than the ones this model learned from."""
        for key in PINNED:
            before = backbones.UNRECORDED.get(key)  # what features and models made before it was recorded had
            mine, theirs = self.feature_metadata.get(key, before), metadata.get(key, before)
            if key == "weights" and mine and theirs and convbase.same_weights(mine, theirs):
                continue  # the same numbers from a renamed or moved file
            if mine != theirs:
                raise CatdogError(
                    f"features do not match the model: {key} is {metadata.get(key)!r} in the features, "
                    f"{self.feature_metadata.get(key)!r} in the model"
                )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, K) probabilities, one column per class of `classes`."""
        return self.model.predict_proba(X)


def write_info(model_dir: str, kind: str, settings: dict, feature_metadata: dict, extract_settings: dict | None,
               holdout: dict | None = None) -> None:
    """head.json: what kind of model, how it was trained (and, for a folder without splits, how its
    rows were divided), and the feature settings it expects."""
    os.makedirs(model_dir, exist_ok=True)
    info = {"kind": kind, "head": settings, "features": feature_metadata, "extract": extract_settings,
            "holdout": holdout}
    with open(os.path.join(model_dir, HEAD_JSON), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)


# What a truncated, foreign or half-written model file raises from zipfile, h5py, Keras or skops.
DAMAGED = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def load(model_dir: "str | storage.Location") -> ModelFolder:
    """A model folder on a local path or a URI (downloaded first: the models load from files). A
    missing, incomplete or damaged folder is a one-line error naming the file."""
    folder = storage.resolve(model_dir)
    if not folder.join(HEAD_JSON).exists():
        raise CatdogError(f"{folder} is not a catdog model folder (no {HEAD_JSON})")
    with storage.readable_folder(folder) as local:
        info, head_config = _read_info(local, folder)
        kind = info["kind"]
        model_class = PixelModel if kind == E2E_KIND else HEADS[kind]
        if not os.path.isfile(os.path.join(local, model_class.file)):
            raise CatdogError(f"{folder} is incomplete: it has no {model_class.file}; train the model again "
                              "or restore the folder")
        try:
            model = model_class.load(local) if kind == E2E_KIND else model_class.load(local, head_config)
        except DAMAGED as exc:
            raise CatdogError(f"{folder.join(model_class.file)} is damaged ({_first_line(exc)}); train the model "
                              "again or restore the folder") from None
    folder_info = ModelFolder(model, info)
    wrong = None if kind == E2E_KIND else model.check_shape(info["features"]["feature_dim"], len(folder_info.classes))
    if wrong:
        raise CatdogError(f"{folder.join(model_class.file)} does not fit {HEAD_JSON}: it has {wrong}; train the "
                          "model again or restore the folder")
    return folder_info


# head.json's "features" fields a model folder needs, and their JSON types.
FEATURE_FIELDS = {"feature_dim": int, "classes": list, "input_size": list, "weights": dict, "preprocess": str,
                  "interpolation": str, "dtype": str, "precision": str}


def _read_info(local: str, folder: storage.Location) -> tuple[dict, HeadConfig | None]:
    """head.json, checked field by field: a wrong type anywhere is one line naming the field."""
    try:
        with open(os.path.join(local, HEAD_JSON)) as f:
            info = json.load(f)
        if not isinstance(info, dict):
            raise ValueError(f"a JSON {type(info).__name__}, not an object")
        if info.get("kind") not in (E2E_KIND, *HEADS):
            raise ValueError(f"unknown kind of model {info.get('kind')!r}")
        _expect(info, "features", dict)
        features = info["features"]
        for name, kind in FEATURE_FIELDS.items():
            _expect(features, name, kind, "features.")
        if features["feature_dim"] <= 0 or not all(isinstance(c, str) for c in features["classes"]):
            raise ValueError("features.feature_dim must be positive and features.classes a list of names")
        if len(features["input_size"]) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in features["input_size"]):
            raise ValueError(f"features.input_size must be [height, width, 3], got {features['input_size']!r}")
        _expect(features["weights"], "source", str, "features.weights.")
        for name in ("extract", "holdout"):
            if info.get(name) is not None:
                _expect(info, name, dict)
        _expect(info, "head", dict)
        head = None if info["kind"] == E2E_KIND else HeadConfig(**info["head"])
        return info, head
    except (ValueError, KeyError, TypeError, CatdogError) as exc:  # JSONDecodeError is a ValueError
        raise CatdogError(f"{folder.join(HEAD_JSON)} is damaged ({_first_line(exc)}); train the model again "
                          "or restore the folder") from None


def _expect(info: dict, name: str, kind: type, prefix: str = "") -> None:
    if name not in info:
        raise KeyError(f"no {prefix}{name}")
    value = info[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{prefix}{name} must be a JSON {kind.__name__}, got {value!r}")


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
