"""Classifiers on the Parquet features, with one interface (fit / predict_proba / save / load):
  logreg  StandardScaler + LogisticRegression (multinomial for more than two classes; C chosen on
          validation), or SGDClassifier(log_loss, one-vs-rest) with partial_fit when the features
          exceed the memory budget;
  dense   the tutorial's Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid) with binary
          cross-entropy for two classes, Dense(N, softmax) with categorical cross-entropy for N;
          RMSprop, keeping the epoch with the best validation loss; fed by tf.data when streaming.

`predict_proba` returns (n, K) probabilities, one column per class, for two classes as for many.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from catdog.config import HeadConfig
from catdog.errors import CatdogError
from catdog.heads.metrics import accuracy, cross_entropy
from catdog.heads.splits import FeatureSplits

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# Every type a logreg head's file may name: the Pipeline, its StandardScaler and LogisticRegression or
# SGDClassifier, the loss object an SGDClassifier holds, and the plain and numpy values inside them.
# skops' own default trusts every scikit-learn estimator and numpy function; a file from elsewhere
# could then put a FunctionTransformer(numpy.negative) or a DummyClassifier in the pipeline and
# change what `predict` answers. A scikit-learn release that moves one of these classes shows up in
# the heads' round-trip tests.
SKOPS_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn._loss._loss.CyHalfBinomialLoss",
})
CLASSIFIERS = (LogisticRegression, SGDClassifier)
ALPHA_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def logreg_pipeline(C: float, seed: int) -> Pipeline:
    """The logistic-regression head in memory: standardised features, then L2-regularised logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


class LogRegHead:
    kind = "logreg"
    file = "head.skops"

    def __init__(self, config: HeadConfig, pipeline: Pipeline | None = None) -> None:
        self.config, self.pipeline = config, pipeline

    def fit(self, data: FeatureSplits, validation: str | None) -> dict:
        return self._fit_stream(data, validation) if data.streaming else self._fit_memory(data, validation)

    def _fit_memory(self, data: FeatureSplits, validation: str | None) -> dict:
        X, y = data.arrays("train")
        history: dict[str, list] = {"C": [], "loss": [], "acc": [], "val_loss": [], "val_acc": []}
        best = None
        for C in C_GRID if validation else (1.0,):
            pipe = logreg_pipeline(C, self.config.seed)
            pipe.fit(X, y)
            history["C"].append(C)
            _score(history, "", pipe.predict_proba(X), y)
            if validation:
                Xv, yv = data.arrays(validation)
                _score(history, "val_", pipe.predict_proba(Xv), yv)
                if best is None or history["val_loss"][-1] < best[0]:
                    best = (history["val_loss"][-1], C, pipe)
            else:
                best = (None, C, pipe)
        self.pipeline = best[2]
        return {**history, "x": "C", "chosen": {"C": best[1]}}

    def _fit_stream(self, data: FeatureSplits, validation: str | None) -> dict:
        scaler = StandardScaler()
        for X, _ in data.chunks("train"):
            scaler.partial_fit(X)
        alphas = ALPHA_GRID if validation else (1e-3,)
        labels = list(range(len(data.classes)))
        models = [SGDClassifier(loss="log_loss", alpha=a, random_state=self.config.seed) for a in alphas]
        curves = [{"loss": [], "acc": [], "val_loss": [], "val_acc": []} for _ in alphas]
        for epoch in range(self.config.epochs):
            seen: list[list] = [[] for _ in alphas]
            for X, y in data.chunks("train", shuffle_seed=self.config.seed + epoch):
                Xs = scaler.transform(X)
                for m, s in zip(models, seen):
                    if hasattr(m, "coef_"):  # progressive validation: score each chunk before learning it
                        s.append((m.predict_proba(Xs), y))
                    m.partial_fit(Xs, y, classes=labels)
            for m, s, curve in zip(models, seen, curves):
                if s:
                    _score(curve, "", np.concatenate([p for p, _ in s]), np.concatenate([t for _, t in s]))
                else:  # a single chunk in the first epoch: nothing was scored before learning it
                    curve["loss"].append(float("nan"))
                    curve["acc"].append(float("nan"))
                if validation:
                    p, t = _predict_chunks(data, validation, lambda Z, m=m: m.predict_proba(scaler.transform(Z)))
                    _score(curve, "val_", p, t)
        best = int(np.argmin([c["val_loss"][-1] for c in curves])) if validation else 0
        self.pipeline = make_pipeline(scaler, models[best])
        epochs = list(range(1, self.config.epochs + 1))
        return {**curves[best], "epoch": epochs, "x": "epoch", "chosen": {"alpha": alphas[best], "streaming": True}}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(X)

    def save(self, model_dir: str) -> None:
        import skops.io

        skops.io.dump(self.pipeline, os.path.join(model_dir, self.file))

    @classmethod
    def load(cls, model_dir: str, config: HeadConfig) -> "LogRegHead":
        import skops.io

        path = os.path.join(model_dir, cls.file)
        foreign = sorted(skops_types(path) - SKOPS_TYPES)
        if foreign:
            raise CatdogError(f"{path} holds types catdog does not load: {', '.join(foreign)}")
        untrusted = skops.io.get_untrusted_types(file=path)  # of ours, those skops does not trust by itself
        return cls(config, skops.io.load(path, trusted=untrusted))

    def check_shape(self, dim: int, classes: int) -> str | None:
        """What differs between the pipeline and the features and classes its head.json names, if anything."""
        steps = [step for _, step in self.pipeline.steps] if isinstance(self.pipeline, Pipeline) else []
        if len(steps) != 2 or type(steps[0]) is not StandardScaler or type(steps[1]) not in CLASSIFIERS:
            return f"a pipeline of {', '.join(type(s).__name__ for s in steps) or type(self.pipeline).__name__}"
        scaler, model = steps
        widths = {getattr(scaler, "n_features_in_", None), getattr(model, "n_features_in_", None),
                  getattr(getattr(model, "coef_", None), "shape", (None, None))[-1]}
        if widths != {dim}:
            return f"{sorted(map(str, widths))[0]} features where head.json has {dim}"
        if len(getattr(model, "classes_", ())) != classes:
            return f"{len(getattr(model, 'classes_', ()))} classes where head.json has {classes}"
        return None


def skops_types(path: str) -> set[str]:
    """Every type and function a skops file names ("module.name"), read from its schema alone."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__class__" in node:
                found.add(f"{node.get('__module__')}.{node['__class__']}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


class DenseHead:
    kind = "dense"
    file = "head.keras"

    def __init__(self, config: HeadConfig, model=None) -> None:
        self.config, self.model = config, model

    def build(self, dim: int, classes: int):
        """The recipe's head, its random numbers drawn from its own seeded initialisers and dropout:
        not keras.utils.set_random_seed, which would reseed Python, numpy and TensorFlow for the
        whole process of whoever called `fit_head`."""
        import keras

        seed, binary = self.config.seed, classes == 2
        init = {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed)}
        out = keras.layers.Dense(1, activation="sigmoid", **init) if binary else keras.layers.Dense(classes, activation="softmax", **init)
        model = keras.Sequential(
            [
                keras.Input((dim,)),
                keras.layers.Dense(self.config.units, activation="relu",
                                   kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1)),
                keras.layers.Dropout(self.config.dropout, seed=seed),
                out,
            ]
        )
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate=self.config.learning_rate),
            loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
            metrics=["acc"],
        )
        return model

    def fit(self, data: FeatureSplits, validation: str | None) -> dict:
        import keras

        self.model = self.build(data.dim, len(data.classes))
        keep_best = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.config.epochs, restore_best_weights=True
        )
        fit_args = dict(epochs=self.config.epochs, verbose=0, callbacks=[keep_best] if validation else [])
        if data.streaming:
            train = self._stream(data, "train", shuffle=True)
            val = self._stream(data, validation, shuffle=False) if validation else None
            history = self.model.fit(train, validation_data=val, shuffle=False, **fit_args)  # chunks come shuffled
        else:
            import tensorflow as tf

            X, y = data.arrays("train")
            val = None
            if validation:
                Xv, yv = data.arrays(validation)
                val = (Xv, self._targets(yv))
            # Shuffled by tf.data with an operation seed (a new order each epoch, the same orders in
            # every run) rather than fit's shuffle, which follows the process's global seed.
            train = (tf.data.Dataset.from_tensor_slices((X, self._targets(y)))
                     .shuffle(len(X), seed=self.config.seed, reshuffle_each_iteration=True)
                     .batch(self.config.batch_size))
            history = self.model.fit(train, validation_data=val, shuffle=False, **fit_args)
        curves = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        best = int(np.argmin(curves["val_loss"])) + 1 if validation else self.config.epochs
        return {**curves, "epoch": list(range(1, len(curves["loss"]) + 1)), "x": "epoch",
                "chosen": {"best_epoch": best, "streaming": data.streaming}}

    def _stream(self, data: FeatureSplits, split: str, shuffle: bool):
        import tensorflow as tf

        epochs = itertools.count()

        def chunks():
            seed = self.config.seed + next(epochs) if shuffle else None
            for X, y in data.chunks(split, shuffle_seed=seed):
                yield X, self._targets(y)

        target = tf.float32 if len(data.classes) == 2 else tf.int32
        signature = (tf.TensorSpec((None, data.dim), tf.float32), tf.TensorSpec((None,), target))
        batches = tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch().batch(self.config.batch_size)
        # A generator's length is unknown to Keras, which then warns that the input "ran out of data"
        # at the end of every epoch; the row count says how many batches there are.
        count = -(-data.count(split) // self.config.batch_size)
        return batches.apply(tf.data.experimental.assert_cardinality(count)).prefetch(2)

    def _targets(self, y: np.ndarray) -> np.ndarray:
        """0/1 floats for the sigmoid output, class indices for the softmax one."""
        return y.astype(np.float32 if self.model.output_shape[-1] == 1 else np.int32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return class_columns(self.model.predict(X, batch_size=256, verbose=0))

    def save(self, model_dir: str) -> None:
        self.model.save(os.path.join(model_dir, self.file))

    def check_shape(self, dim: int, classes: int) -> str | None:
        width, outputs = self.model.input_shape[-1], self.model.output_shape[-1]
        if width != dim:
            return f"{width} features where head.json has {dim}"
        if outputs != (1 if classes == 2 else classes):
            return f"{outputs} outputs for {classes} classes"
        return None

    @classmethod
    def load(cls, model_dir: str, config: HeadConfig) -> "DenseHead":
        import keras

        return cls(config, keras.saving.load_model(os.path.join(model_dir, cls.file), safe_mode=True))


HEADS = {h.kind: h for h in (LogRegHead, DenseHead)}


def class_columns(P: np.ndarray) -> np.ndarray:
    """A Keras model's output as one column per class: the recipe's single sigmoid output is the
    probability of the second class."""
    return np.hstack([1.0 - P, P]) if P.shape[1] == 1 else P


def predict_split(head: LogRegHead | DenseHead, data: FeatureSplits, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The (n, K) probabilities and the labels of one split, chunk by chunk."""
    return _predict_chunks(data, split, head.predict_proba)


def _predict_chunks(data: FeatureSplits, split: str, proba) -> tuple[np.ndarray, np.ndarray]:
    parts = [(proba(X), y) for X, y in data.chunks(split)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])


def _score(history: dict, prefix: str, P: np.ndarray, y: np.ndarray) -> None:
    history[prefix + "loss"].append(cross_entropy(y, P))
    history[prefix + "acc"].append(accuracy(y, P))
