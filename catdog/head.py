"""Classifiers on the Parquet features: fit on train, select on validation, save with metadata.

Two heads with one interface (fit / predict_proba / save / load), like scikit-learn estimators:
  logreg  StandardScaler + LogisticRegression (C chosen on validation), or SGDClassifier(log_loss)
          with partial_fit when the features exceed the memory budget;
  dense   the tutorial's Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid), RMSprop, keeping
          the epoch with the best validation loss; fed by tf.data from Parquet when streaming.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from catdog import features
from catdog.errors import CatdogError

MODELS = ("logreg", "dense")
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
ALPHA_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
HEAD_JSON = "head.json"
# Feature settings a head depends on: features made any other way mean something else.
PINNED = ("model", "weights", "input_size", "preprocess", "interpolation", "feature_dim", "flatten_order", "dtype")


@dataclass(frozen=True)
class HeadConfig:
    features: str
    model_dir: str
    model: str = "logreg"
    epochs: int = 30
    batch_size: int = 20
    learning_rate: float = 2e-5
    units: int = 256
    dropout: float = 0.5
    max_memory: int = 2 * 1024**3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise CatdogError(f"--model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if min(self.epochs, self.batch_size, self.units) < 1 or self.max_memory < 1:
            raise CatdogError("--epochs, --batch-size, --units and --max-memory must be positive")


class Data:
    """The feature splits, held in memory when they fit the budget, else streamed from Parquet."""

    def __init__(self, out: str, max_memory: int, seed: int) -> None:
        self.out, self.seed = out, seed
        self.metadata = features.read_metadata(out)
        self.dim = int(self.metadata["feature_dim"])
        self.splits = features.splits(out)
        rows = sum(features.count_rows(out, s) for s in self.splits)
        row_bytes = self.dim * 4
        self.streaming = rows * row_bytes * 3 > max_memory  # the arrays, a scaled copy, slack
        self.chunk_rows = max(16, max_memory // (row_bytes * 4))
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._cache:
            X, y, _ = features.load(self.out, split)
            self._cache[split] = (X, y)
        return self._cache[split]

    def chunks(self, split: str, shuffle_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.streaming:
            yield from features.stream(self.out, split, self.chunk_rows, shuffle_seed)
        else:
            yield self.arrays(split)


class LogRegHead:
    kind = "logreg"
    file = "head.skops"

    def __init__(self, config: HeadConfig, pipeline: Pipeline | None = None) -> None:
        self.config, self.pipeline = config, pipeline

    def fit(self, data: Data, validation: str | None) -> dict:
        return self._fit_stream(data, validation) if data.streaming else self._fit_memory(data, validation)

    def _fit_memory(self, data: Data, validation: str | None) -> dict:
        X, y = data.arrays("train")
        history: dict[str, list] = {"C": [], "loss": [], "acc": [], "val_loss": [], "val_acc": []}
        best = None
        for C in C_GRID if validation else (1.0,):
            pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=self.config.seed))
            pipe.fit(X, y)
            history["C"].append(C)
            _score(history, "", pipe.predict_proba(X)[:, 1], y)
            if validation:
                Xv, yv = data.arrays(validation)
                _score(history, "val_", pipe.predict_proba(Xv)[:, 1], yv)
                if best is None or history["val_loss"][-1] < best[0]:
                    best = (history["val_loss"][-1], C, pipe)
            else:
                best = (None, C, pipe)
        self.pipeline = best[2]
        return {**history, "x": "C", "chosen": {"C": best[1]}}

    def _fit_stream(self, data: Data, validation: str | None) -> dict:
        scaler = StandardScaler()
        for X, _ in data.chunks("train"):
            scaler.partial_fit(X)
        alphas = ALPHA_GRID if validation else (1e-3,)
        models = [SGDClassifier(loss="log_loss", alpha=a, random_state=self.config.seed) for a in alphas]
        curves = [{"loss": [], "acc": [], "val_loss": [], "val_acc": []} for _ in alphas]
        for epoch in range(self.config.epochs):
            seen: list[list] = [[] for _ in alphas]
            for X, y in data.chunks("train", shuffle_seed=self.config.seed + epoch):
                Xs = scaler.transform(X)
                for m, s in zip(models, seen):
                    if hasattr(m, "coef_"):  # progressive validation: score each chunk before learning it
                        s.append((m.predict_proba(Xs)[:, 1], y))
                    m.partial_fit(Xs, y, classes=[0, 1])
            for m, s, curve in zip(models, seen, curves):
                if s:
                    _score(curve, "", np.concatenate([p for p, _ in s]), np.concatenate([t for _, t in s]))
                else:  # a single chunk in the first epoch: nothing was scored before learning it
                    curve["loss"].append(float("nan"))
                    curve["acc"].append(float("nan"))
                if validation:
                    p, t = _predict_chunks(data, validation, lambda Z, m=m: m.predict_proba(scaler.transform(Z))[:, 1])
                    _score(curve, "val_", p, t)
        best = int(np.argmin([c["val_loss"][-1] for c in curves])) if validation else 0
        self.pipeline = make_pipeline(scaler, models[best])
        epochs = list(range(1, self.config.epochs + 1))
        return {**curves[best], "epoch": epochs, "x": "epoch", "chosen": {"alpha": alphas[best], "streaming": True}}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(X)[:, 1]

    def save(self, model_dir: str) -> None:
        import skops.io

        skops.io.dump(self.pipeline, os.path.join(model_dir, self.file))

    @classmethod
    def load(cls, model_dir: str, config: HeadConfig) -> "LogRegHead":
        import skops.io

        path = os.path.join(model_dir, cls.file)
        # skops refuses types it was not told to trust; trust only scikit-learn's and numpy's own.
        untrusted = skops.io.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
        if foreign:
            raise CatdogError(f"{path} holds types catdog does not load: {', '.join(foreign)}")
        return cls(config, skops.io.load(path, trusted=untrusted))


class DenseHead:
    kind = "dense"
    file = "head.keras"

    def __init__(self, config: HeadConfig, model=None) -> None:
        self.config, self.model = config, model

    def build(self, dim: int):
        import keras

        keras.utils.set_random_seed(self.config.seed)
        model = keras.Sequential(
            [
                keras.Input((dim,)),
                keras.layers.Dense(self.config.units, activation="relu"),
                keras.layers.Dropout(self.config.dropout),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate=self.config.learning_rate),
            loss="binary_crossentropy",
            metrics=["acc"],
        )
        return model

    def fit(self, data: Data, validation: str | None) -> dict:
        import keras

        self.model = self.build(data.dim)
        keep_best = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.config.epochs, restore_best_weights=True
        )
        fit_args = dict(epochs=self.config.epochs, verbose=0, callbacks=[keep_best] if validation else [])
        if data.streaming:
            train = self._stream(data, "train", shuffle=True)
            val = self._stream(data, validation, shuffle=False) if validation else None
            history = self.model.fit(train, validation_data=val, **fit_args)
        else:
            X, y = data.arrays("train")
            val = data.arrays(validation) if validation else None
            history = self.model.fit(X, y, batch_size=self.config.batch_size, validation_data=val, shuffle=True, **fit_args)
        curves = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        best = int(np.argmin(curves["val_loss"])) + 1 if validation else self.config.epochs
        return {**curves, "epoch": list(range(1, len(curves["loss"]) + 1)), "x": "epoch",
                "chosen": {"best_epoch": best, "streaming": data.streaming}}

    def _stream(self, data: Data, split: str, shuffle: bool):
        import tensorflow as tf

        epochs = itertools.count()

        def chunks():
            seed = self.config.seed + next(epochs) if shuffle else None
            for X, y in data.chunks(split, shuffle_seed=seed):
                yield X, y.astype(np.float32)

        signature = (tf.TensorSpec((None, data.dim), tf.float32), tf.TensorSpec((None,), tf.float32))
        batches = tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch()
        return batches.batch(self.config.batch_size).prefetch(2)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X, batch_size=256, verbose=0).reshape(-1)

    def save(self, model_dir: str) -> None:
        self.model.save(os.path.join(model_dir, self.file))

    @classmethod
    def load(cls, model_dir: str, config: HeadConfig) -> "DenseHead":
        import keras

        return cls(config, keras.saving.load_model(os.path.join(model_dir, cls.file), safe_mode=True))


class EndToEnd:
    """A model from `catdog train-e2e`: conv base and head in one, fed raw pixels, not features."""

    kind = "e2e"
    file = "model.keras"

    def __init__(self, model) -> None:
        self.model = model

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        return self.model.predict(pixels.astype(np.float32), batch_size=32, verbose=0).reshape(-1)

    @classmethod
    def load(cls, model_dir: str, config: dict) -> "EndToEnd":
        import keras

        from catdog import train

        train.shear_layer()  # registers the one custom layer the model holds

        return cls(keras.saving.load_model(os.path.join(model_dir, cls.file), safe_mode=True))


E2E_FILE = EndToEnd.file
HEADS = {h.kind: h for h in (LogRegHead, DenseHead)}


@dataclass(frozen=True)
class SavedHead:
    """A head loaded back with the feature settings it was trained on."""

    head: LogRegHead | DenseHead | EndToEnd
    info: dict

    @property
    def takes_images(self) -> bool:
        return isinstance(self.head, EndToEnd)

    @property
    def feature_metadata(self) -> dict:
        return self.info["features"]

    def check(self, metadata: dict) -> None:
        """Refuse features made with other settings than the ones this head learned from."""
        for key in PINNED:
            if self.feature_metadata.get(key) != metadata.get(key):
                raise CatdogError(
                    f"features do not match the model: {key} is {metadata.get(key)!r} in the features, "
                    f"{self.feature_metadata.get(key)!r} in the model"
                )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.head.predict_proba(X)


def save(model_dir: str, head, config: HeadConfig, data: Data, extract_config: dict | None) -> None:
    os.makedirs(model_dir, exist_ok=True)
    head.save(model_dir)
    save_info(model_dir, head.kind, asdict(config), data.metadata, extract_config)


def save_info(model_dir: str, kind: str, settings: dict, feature_metadata: dict, extract_config: dict | None) -> None:
    """head.json: what kind of model, how it was trained, and the feature settings it expects."""
    info = {"kind": kind, "head": settings, "features": feature_metadata, "extract": extract_config}
    with open(os.path.join(model_dir, HEAD_JSON), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)


def load(model_dir: str) -> SavedHead:
    path = os.path.join(model_dir, HEAD_JSON)
    if not os.path.isfile(path):
        raise CatdogError(f"{model_dir} is not a catdog model folder (no {HEAD_JSON})")
    with open(path) as f:
        info = json.load(f)
    if info["kind"] == EndToEnd.kind:
        return SavedHead(EndToEnd.load(model_dir, info["head"]), info)
    return SavedHead(HEADS[info["kind"]].load(model_dir, HeadConfig(**info["head"])), info)


def predict_split(head, data: Data, split: str) -> tuple[np.ndarray, np.ndarray]:
    return _predict_chunks(data, split, head.predict_proba)


def _predict_chunks(data: Data, split: str, proba) -> tuple[np.ndarray, np.ndarray]:
    parts = [(proba(X), y) for X, y in data.chunks(split)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])


def _score(history: dict, prefix: str, p: np.ndarray, y: np.ndarray) -> None:
    history[prefix + "loss"].append(float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])))
    history[prefix + "acc"].append(float(accuracy_score(y, p >= 0.5)))


def run(config: HeadConfig) -> dict:
    """Fit on train, select on validation, evaluate every labeled split, save model and figures."""
    from catdog import manifest, report

    data = Data(config.features, config.max_memory, config.seed)
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
    by_split = {s: report.metrics(p, y) for s, (p, y) in results.items()}
    extract_config = (manifest.read(config.features) or {}).get("config")
    save(config.model_dir, head, config, data, extract_config)
    title = f"{config.model} head"
    classes = data.metadata.get("classes") or ["0", "1"]
    report.plot_curves(history, os.path.join(config.model_dir, "curves.png"), title)
    last = "test" if "test" in results else list(results)[-1]
    report.plot_confusion(by_split[last]["confusion_matrix"], classes, os.path.join(config.model_dir, "confusion.png"), f"{title}, {last}")
    notes += _wrong_grid(config, extract_config, last, *results[last], classes)
    summary = {"model": config.model, "streaming": data.streaming, "chosen": history["chosen"], "splits": by_split,
               "history": {k: v for k, v in history.items() if k != "chosen"}, "notes": notes}
    with open(os.path.join(config.model_dir, "report.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _wrong_grid(config: HeadConfig, extract_config: dict | None, split: str, p, y, classes) -> list[str]:
    from catdog import images, report, storage

    picks = report.most_confidently_wrong(p, y)
    if len(picks) == 0:
        return [f"no wrong predictions on {split}: no grid of wrong images"]
    paths = features.dataset(config.features).to_table(columns=["path"], filter=features.pads.field("split") == split)
    paths = paths.column("path").to_numpy(zero_copy_only=False)
    root = (extract_config or {}).get("root")
    try:
        fs, base = storage.resolve(root)
        pictures = [images.decode(storage.read_bytes(fs, storage.join(base, paths[i])), 150, "bilinear", 10**9) for i in picks]
    except Exception as exc:  # the images may live where this machine cannot see them
        return [f"images under {root} not readable here ({type(exc).__name__}): no grid of wrong images"]
    captions = [f"{os.path.basename(paths[i])}\np({classes[-1]})={p[i]:.3f}, true {classes[y[i]]}" for i in picks]
    report.plot_wrong(pictures, captions, os.path.join(config.model_dir, "wrong.png"), f"most confidently wrong, {split}")
    return []
