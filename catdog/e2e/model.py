"""The end-to-end model: the frozen conv base (VGG16, or any catdog.vision.backbones network) plus the
tutorial's head, trained on augmented
pixels, under any tf.distribute strategy. Plain Keras and TensorFlow: Ray Train drives it from
`catdog.e2e.training.train_worker`.

Keras 3's fit() cannot take MultiWorkerMirroredStrategy input (keras-team/keras#20585), so steps
run through strategy.run in a small custom loop; the optimizer all-reduces the gradients.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

import numpy as np

from catdog.config import TrainConfig
from catdog.errors import CatdogError
from catdog.heads.metrics import CLIP
from catdog.heads.model_folder import PIXEL_MODEL
from catdog.vision import convbase, layers

MODEL_FILE = PIXEL_MODEL  # the whole model, preprocessing inside: what `catdog predict` loads
STATE = "state.json"
WEIGHTS = "model.weights.h5"


def build_model(config: TrainConfig, conv_weights: convbase.Weights | None = None, classes: int = 2):
    """Raw RGB pixels (0..255) -> augmentation (training only) -> preprocessing -> conv base -> head:
    the recipe's Dense(1, sigmoid) for two classes, Dense(N, softmax) for N."""
    import keras

    size = config.image_size
    if conv_weights:
        base = convbase.ConvBase(conv_weights, config.embed).model
    else:
        base = convbase.network(keras, config.backbone, size, None, config.pooling)
    base.trainable = False  # frozen before compile, as the tutorial insists
    inputs = keras.Input((size, size, 3), name="pixels")
    x = base(layers.preprocessing_layer(config.preprocess)(layers.augmentation(config.seed)(inputs)))
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    outputs = (keras.layers.Dense(1, activation="sigmoid") if classes == 2 else keras.layers.Dense(classes, activation="softmax"))(x)
    return keras.Model(inputs, outputs, name="catdog_e2e")


def fine_tune(net, from_layer: str) -> None:
    base = layers.conv_base(net)
    names = [layer.name for layer in base.layers]
    if from_layer not in names:
        convs = [n for n, layer in zip(names, base.layers) if layer.weights]
        raise CatdogError(f"--fine-tune-from {from_layer!r} is not a layer of {base.name} (its last ones with weights: "
                          f"{', '.join(convs[-3:])})")
    base.trainable = True
    for layer in base.layers[: names.index(from_layer)]:
        layer.trainable = False


class Trainer:
    """The model, its training state and its compiled steps; restored from a saved folder if given."""

    def __init__(self, config: TrainConfig, conv_weights: convbase.Weights, strategy, restore_from: str | None,
                 classes: int = 2) -> None:
        self.config, self.strategy = config, strategy
        self.state: dict = {"epoch": 0, "history": {}, "unreadable": {}}
        with strategy.scope():
            self.net = build_model(config, conv_weights, classes)
            if restore_from:
                with open(os.path.join(restore_from, STATE)) as f:
                    self.state = json.load(f)
                if self.tuning:
                    fine_tune(self.net, config.fine_tune_from)
                self.net.load_weights(os.path.join(restore_from, WEIGHTS))
        self.state.setdefault("starts", []).append(self.state["epoch"])  # where each (re)start picked up
        self.state.setdefault("replicas", []).append(strategy.num_replicas_in_sync)  # and on how many workers
        self.steps = _Steps(self.net, strategy, config, self.tuning)

    @property
    def tuning(self) -> bool:
        return bool(self.config.fine_tune_from) and self.state["epoch"] > self.config.epochs

    def remaining_epochs(self) -> range:
        return range(self.state["epoch"], self.config.total_epochs)

    def run_epoch(self, epoch: int, batches: dict[str, Iterable]) -> dict:
        """One pass over `batches["train"]` then `batches["validation"]`, each of (pixels, labels, ok)."""
        if epoch == self.config.epochs and self.config.fine_tune_from:
            with self.strategy.scope():
                fine_tune(self.net, self.config.fine_tune_from)
            self.steps = _Steps(self.net, self.strategy, self.config, tuning=True)
        metrics = {}
        for split, prefix in (("train", ""), ("validation", "val_")):
            totals = np.zeros(4)
            for x, y, ok in batches[split]:
                totals += self.steps.run(x, y, ok, training=split == "train")
            loss, correct, count, bad = totals
            metrics[prefix + "loss"], metrics[prefix + "acc"] = loss / max(count, 1), correct / max(count, 1)
            self.state["unreadable"][split] = int(bad)
        for key, value in metrics.items():
            self.state["history"].setdefault(key, []).append(float(value))
        self.state["epoch"] = epoch + 1
        return {**metrics, "epoch": self.state["epoch"]}

    def save(self, folder: str, chief: bool) -> None:
        """Weights on every worker (saving is collective); the whole model and state on the chief."""
        self.net.save_weights(os.path.join(folder, WEIGHTS))
        if chief:
            self.net.save(os.path.join(folder, MODEL_FILE))
            with open(os.path.join(folder, STATE), "w") as f:
                json.dump(self.state, f)


class _Steps:
    """One compiled train or evaluation step; returns (loss sum, correct, count, unreadable) over all workers.

    Rows whose image could not be read come with ok=0: they weigh nothing and are counted.
    """

    def __init__(self, net, strategy, config: TrainConfig, tuning: bool) -> None:
        import keras
        import tensorflow as tf

        self.net, self.strategy = net, strategy
        with strategy.scope():
            rate = config.fine_tune_learning_rate if tuning else config.learning_rate
            self.optimizer = keras.optimizers.RMSprop(learning_rate=rate)
        self.train = tf.function(lambda x, y, w: self._reduce(self._train_step, x, y, w))
        self.evaluate = tf.function(lambda x, y, w: self._reduce(self._eval_step, x, y, w))

    def run(self, x, y, ok, training: bool) -> np.ndarray:
        return np.asarray((self.train if training else self.evaluate)(x, y, ok), dtype=np.float64)

    def _reduce(self, step, x, y, w):
        import tensorflow as tf

        sums = self.strategy.run(step, args=(x, y, w))
        return tf.stack([self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in sums])

    def _train_step(self, x, y, w):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            p = self.net(x, training=True)
            losses = _cross_entropy(y, p) * w
            # Each worker's mean; the optimizer's cross-worker all-reduce sums, so divide by workers too.
            loss = tf.reduce_sum(losses) / tf.maximum(tf.reduce_sum(w), 1.0) / self.strategy.num_replicas_in_sync
        variables = self.net.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return _sums(y, p, losses, w)

    def _eval_step(self, x, y, w):
        p = self.net(x, training=False)
        return _sums(y, p, _cross_entropy(y, p) * w, w)


def _cross_entropy(y, p):
    """Per image: binary cross-entropy of a (n, 1) sigmoid output, categorical of a (n, N) softmax."""
    import tensorflow as tf

    p = tf.clip_by_value(p, CLIP, 1 - CLIP)
    if p.shape[-1] == 1:
        y, p = tf.cast(y, p.dtype), tf.reshape(p, [-1])
        return -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
    return -tf.math.log(tf.gather(p, tf.cast(y, tf.int32), batch_dims=1))


def _sums(y, p, losses, w):
    import tensorflow as tf

    predicted = tf.cast(tf.reshape(p, [-1]) >= 0.5, tf.int32) if p.shape[-1] == 1 else tf.argmax(p, axis=-1, output_type=tf.int32)
    correct = tf.cast(tf.equal(predicted, tf.cast(y, tf.int32)), tf.float32) * w
    return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.reduce_sum(w), tf.reduce_sum(1.0 - w)
