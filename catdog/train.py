"""End-to-end training on augmented images: the frozen VGG16 conv base plus a head, on Ray Train.

The tutorial's second method, distributed: Ray Data lists and decodes the images once and shards
them to the workers; each worker runs Keras under MultiWorkerMirroredStrategy; every epoch is
reported to Ray Train with a checkpoint, and a run started again with the same OUT resumes from
the last one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from catdog import dataset, images, model
from catdog.config import ExtractConfig
from catdog.errors import CatdogError

RUN_NAME = "train-e2e"
STATE = "state.json"
MODEL_FILE = "model.keras"
# The tutorial's ImageDataGenerator: rotation 40 degrees, shifts 0.2, shear 0.2, zoom 0.2, flips, nearest fill.
AUGMENTATION = {"rotation": 40 / 360, "shift": 0.2, "shear": 0.2, "zoom": 0.2}


@dataclass(frozen=True)
class TrainConfig:
    root: str
    out: str
    num_workers: int = 2
    use_gpu: bool = False
    epochs: int = 30
    batch_size: int = 20
    learning_rate: float = 2e-5
    weights: str = "imagenet"
    seed: int = 0
    image_size: int = 150
    preprocess: str = "vgg16"
    interpolation: str = "bilinear"
    fine_tune_from: str | None = None  # e.g. block5_conv1: unfreeze from there after `epochs`
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-5
    max_failures: int = 3
    address: str | None = None

    def extract_config(self) -> ExtractConfig:
        """The extraction settings the same images would have for `catdog predict`."""
        return ExtractConfig(root=self.root, out=self.out, weights=self.weights, seed=self.seed,
                             image_size=self.image_size, preprocess=self.preprocess, interpolation=self.interpolation)

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.fine_tune_from else 0)


def build_model(config: TrainConfig, conv_weights: bytes | None = None):
    """Raw RGB pixels (0..255) -> augmentation (training only) -> preprocessing -> conv base -> head."""
    import keras

    size = config.image_size
    augment = keras.Sequential(
        [
            keras.layers.RandomRotation(AUGMENTATION["rotation"], fill_mode="nearest", seed=config.seed),
            keras.layers.RandomTranslation(AUGMENTATION["shift"], AUGMENTATION["shift"], fill_mode="nearest", seed=config.seed),
            shear_layer()(AUGMENTATION["shear"], AUGMENTATION["shear"], fill_mode="nearest", seed=config.seed),
            keras.layers.RandomZoom(AUGMENTATION["zoom"], fill_mode="nearest", seed=config.seed),
            keras.layers.RandomFlip("horizontal", seed=config.seed),
        ],
        name="augmentation",
    )
    base = model.ConvBase(conv_weights, config.extract_config()).model if conv_weights else keras.applications.VGG16(
        weights=None, include_top=False, input_shape=(size, size, 3))
    base.trainable = False  # frozen before compile, as the tutorial insists
    inputs = keras.Input((size, size, 3), name="pixels")
    x = base(preprocessing_layer(keras, config.preprocess)(augment(inputs)))
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="catdog_e2e")


def shear_layer():
    """keras.layers.RandomShear whose saved config loads again.

    Keras 3.15 saves the factor as the range (-f, f) but refuses negative numbers when loading it.
    """
    import keras

    @keras.saving.register_keras_serializable(package="catdog", name="RandomShear")
    class RandomShear(keras.layers.RandomShear):
        def get_config(self):
            config = super().get_config()
            config["x_factor"], config["y_factor"] = self._x_factor_max, self._y_factor_max
            return config

        def __init__(self, x_factor=0.0, y_factor=0.0, **kwargs):
            super().__init__(x_factor, y_factor, **kwargs)
            self._x_factor_max = x_factor if isinstance(x_factor, (int, float)) else max(x_factor)
            self._y_factor_max = y_factor if isinstance(y_factor, (int, float)) else max(y_factor)

    return RandomShear


def preprocessing_layer(keras, mode: str):
    """model.preprocess as a plain Keras layer, so the saved model loads in safe mode.

    'vgg16' (RGB->BGR, minus the ImageNet mean) is a fixed 1x1 convolution: a permutation matrix
    and the negated mean as bias, exact in float32.
    """
    if mode == "rescale":
        return keras.layers.Rescaling(1.0 / 255.0, name="preprocess")
    layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3), -model._CAFFE_BGR_MEAN])
    return layer


def fine_tune(net, from_layer: str) -> None:
    base = net.get_layer("vgg16")
    names = [layer.name for layer in base.layers]
    if from_layer not in names:
        raise CatdogError(f"--fine-tune-from {from_layer!r} is not a VGG16 layer (e.g. block5_conv1)")
    base.trainable = True
    for layer in base.layers[: names.index(from_layer)]:
        layer.trainable = False


def decode_batch(batch: dict, *, root: str, size: int, interpolation: str) -> dict:
    """Ray Data stage: paths -> raw pixels; unreadable images are dropped (and counted by the driver)."""
    from catdog import storage

    fs, base = storage.resolve(root)
    pixels, labels = [], []
    for path, label in zip(batch["path"], batch["label"]):
        try:
            pixels.append(images.decode(storage.read_bytes(fs, storage.join(base, path)), size, interpolation, 10**9))
            labels.append(label)
        except Exception:  # training goes on without a bad image; extraction is where errors are recorded
            continue
    empty = np.empty((0, size, size, 3), np.uint8)
    return {"image": np.stack(pixels).astype(np.float32) if pixels else empty.astype(np.float32),
            "label": np.asarray(labels, dtype=np.float32)}


def train_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker: a custom loop under MultiWorkerMirroredStrategy.

    Keras 3's fit() cannot take MultiWorkerMirroredStrategy input (keras-team/keras#20585), so the
    steps run through strategy.run; the optimizer all-reduces the gradients across workers.
    """
    import ray.train
    import tensorflow as tf

    config = TrainConfig(**loop_config["config"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    checkpoint = ray.train.get_checkpoint()
    state = {"epoch": 0, "history": {}}
    with strategy.scope():
        net = build_model(config, ray.get(loop_config["weights"]))
        if checkpoint:
            with checkpoint.as_directory() as folder:
                state = json.load(open(os.path.join(folder, STATE)))
                if state["epoch"] > config.epochs and config.fine_tune_from:
                    fine_tune(net, config.fine_tune_from)
                net.load_weights(os.path.join(folder, "model.weights.h5"))
    state.setdefault("starts", []).append(state["epoch"])  # where each (re)start picked up
    steps = _Steps(net, strategy, config, tuning=state["epoch"] > config.epochs and bool(config.fine_tune_from))
    shards = {k: ray.train.get_dataset_shard(k) for k in ("train", "validation")}
    for epoch in range(state["epoch"], config.total_epochs):
        if epoch == config.epochs and config.fine_tune_from:
            with strategy.scope():
                fine_tune(net, config.fine_tune_from)
            steps = _Steps(net, strategy, config, tuning=True)
        metrics = {}
        for split, prefix in (("train", ""), ("validation", "val_")):
            totals = np.zeros(3)
            for batch in shards[split].iter_tf_batches(batch_size=config.batch_size):
                totals += steps.run(batch["image"], batch["label"], training=split == "train")
            metrics[prefix + "loss"], metrics[prefix + "acc"] = totals[0] / totals[2], totals[1] / totals[2]
        for key, value in metrics.items():
            state["history"].setdefault(key, []).append(float(value))
        state["epoch"] = epoch + 1
        _report(net, state)


class _Steps:
    """One compiled train or evaluation step; returns (loss sum, correct, count) over all workers."""

    def __init__(self, net, strategy, config: TrainConfig, tuning: bool) -> None:
        import keras
        import tensorflow as tf

        self.net, self.strategy = net, strategy
        with strategy.scope():
            rate = config.fine_tune_learning_rate if tuning else config.learning_rate
            self.optimizer = keras.optimizers.RMSprop(learning_rate=rate)
        self.train = tf.function(lambda x, y: self._reduce(self._train_step, x, y))
        self.evaluate = tf.function(lambda x, y: self._reduce(self._eval_step, x, y))

    def run(self, x, y, training: bool) -> np.ndarray:
        return np.asarray((self.train if training else self.evaluate)(x, y), dtype=np.float64)

    def _reduce(self, step, x, y):
        import tensorflow as tf

        sums = self.strategy.run(step, args=(x, y))
        return tf.stack([self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in sums])

    def _train_step(self, x, y):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            p = tf.reshape(self.net(x, training=True), [-1])
            losses = _bce(y, p)
            # Each worker's mean; the optimizer's cross-worker all-reduce sums, so divide by workers too.
            loss = tf.reduce_mean(losses) / self.strategy.num_replicas_in_sync
        variables = self.net.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return _sums(y, p, losses)

    def _eval_step(self, x, y):
        import tensorflow as tf

        p = tf.reshape(self.net(x, training=False), [-1])
        return _sums(y, p, _bce(y, p))


def _bce(y, p):
    import tensorflow as tf

    p = tf.clip_by_value(p, 1e-7, 1 - 1e-7)
    return -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))


def _sums(y, p, losses):
    import tensorflow as tf

    correct = tf.cast(tf.equal(tf.cast(p >= 0.5, y.dtype), y), tf.float32)
    return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(y), tf.float32)


def _report(net, state: dict) -> None:
    import ray.train

    metrics = {k: v[-1] for k, v in state["history"].items()} | {"epoch": state["epoch"]}
    with tempfile.TemporaryDirectory() as folder:
        net.save_weights(os.path.join(folder, "model.weights.h5"))  # every worker: saving is collective
        if ray.train.get_context().get_world_rank() == 0:
            net.save(os.path.join(folder, MODEL_FILE))
            with open(os.path.join(folder, STATE), "w") as f:
                json.dump(state, f)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)


def run(config: TrainConfig) -> dict:
    """Train on ROOT/train, validate on ROOT/validation; write OUT/model and curves; resume if OUT has a run."""
    import ray
    import ray.train
    from ray.train.tensorflow import TensorflowTrainer

    from catdog import extract, head, report

    image_set = dataset.scan(config.root)
    rows = {s: [{"path": p, "label": y} for p, y, t in zip(image_set.paths, image_set.labels, image_set.splits) if t == s]
            for s in ("train", "validation")}
    if image_set.layout != "split" or not rows["train"] or not rows["validation"] or len(image_set.classes) != 2:
        raise CatdogError("train-e2e needs ROOT/train/CLASS/* and ROOT/validation/CLASS/* with two classes")
    weights = model.resolve_weights(config.extract_config())
    out = os.path.abspath(config.out)
    with extract.ray_session(config.address):
        decode = dict(root=config.root, size=config.image_size, interpolation=config.interpolation)
        # Workers hold the CPUs; decoding shares them unreserved, a few tasks at a time.
        datasets = {s: ray.data.from_items(r).map_batches(decode_batch, fn_kwargs=decode, batch_size=64, num_cpus=0,
                                                          compute=ray.data.TaskPoolStrategy(size=2)) for s, r in rows.items()}
        trainer = TensorflowTrainer(
            train_loop,
            train_loop_config={"config": asdict(config), "weights": ray.put(weights.data)},
            scaling_config=ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
            run_config=ray.train.RunConfig(
                name=RUN_NAME, storage_path=out,
                failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            ),
            datasets=datasets,
        )
        result = trainer.fit()
    with result.checkpoint.as_directory() as folder:
        state = json.load(open(os.path.join(folder, STATE)))
        model_dir = os.path.join(out, "model")
        os.makedirs(model_dir, exist_ok=True)
        shutil.copy(os.path.join(folder, MODEL_FILE), os.path.join(model_dir, head.E2E_FILE))
    metadata = extract.feature_metadata(config.extract_config(), image_set, weights)
    head.save_info(model_dir, "e2e", asdict(config), metadata, asdict(config.extract_config()))
    history = {**state["history"], "epoch": list(range(1, state["epoch"] + 1)), "x": "epoch"}
    report.plot_curves(history, os.path.join(model_dir, "curves.png"), "end-to-end")
    return {"epochs": state["epoch"], "history": state["history"], "starts": state["starts"], "model_dir": model_dir,
            "checkpoint": result.checkpoint.path}
