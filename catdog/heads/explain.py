"""The `catdog explain` job: Grad-CAM class activation heatmaps on the conv base's last conv layer.

Grad-CAM (Selvaraju et al. 2017, the heatmaps of the recipe's book): the gradient of a class's
score with respect to the last convolutional maps (VGG16's `block5_conv3`; for any backbone the
last layer with a spatial output that is not a pooling, or `--layer`), averaged over space, weighs
each of their channels;
the ReLU of the weighted sum, scaled to [0, 1] and resized to the input, is the heatmap. The score
is the model's logit before its sigmoid or softmax (for the recipe's single sigmoid output, +z/2
for the second class and -z/2 for the first). One code path for every model kind: the conv base
and preprocessing the model's features were made with (its recorded weights, checked), then the
head as TensorFlow ops — the logistic regression is a linear layer on the scaled features, the
dense and end-to-end heads are their own Dense layers.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from catdog import figures, storage
from catdog.errors import CatdogError
from catdog.extraction import imagefolder
from catdog.heads import model_folder
from catdog.vision import convbase, layers

BATCH = 16  # images per gradient pass: bounds the memory of the stored activations
DEFAULT_DIR = "explain"  # under the model folder, when no folder is given


@dataclass(frozen=True)
class Explanation:
    path: str
    explained: str  # the class whose heatmap this is
    probability: float  # the model's probability of that class
    predicted: str
    heatmap: np.ndarray  # (S, S) float32 in [0, 1], over the image as the model saw it
    figure: str = ""


class GradCam:
    """A saved model's conv base, preprocessing and head, wired for Grad-CAM."""

    def __init__(self, model: model_folder.ModelFolder, weights: str | None = None, layer: str | None = None) -> None:
        import keras

        self.model = model
        if model.takes_images:
            net = model.model.model
            base, prep = layers.conv_base(net), net.get_layer("preprocess")
            self._preprocess = lambda pixels: prep(pixels)
            self._logits = _dense_logits([layer for layer in net.layers if isinstance(layer, keras.layers.Dense)])
            self._pooling = "flatten"
        else:
            config = model.extract_config(weights=weights)
            # fp32 whatever the features' precision: a heatmap needs gradients, not speed.
            base = convbase.ConvBase(model.conv_weights(weights), config.embed.replace(precision="fp32")).model
            self._preprocess = lambda pixels: layers.preprocess(pixels, config.preprocess)
            self._logits = _head_logits(model)
            self._pooling = config.pooling
        self.layer = layer or last_conv_layer(base)
        try:
            target = base.get_layer(self.layer)
        except ValueError:
            raise CatdogError(f"--layer {self.layer!r} is not a layer of the conv base (its last conv layer is "
                              f"{last_conv_layer(base)})") from None
        if len(target.output.shape) != 4:
            raise CatdogError(f"--layer {self.layer!r} has no spatial maps to explain (output {target.output.shape})")
        self._maps = keras.Model(base.inputs, [target.output, base.output])

    def heatmaps(self, pixels: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, S, S, 3) uint8 -> heatmaps (n, S, S) in [0, 1], the class explained for each image,
        and the model's (n, K) probabilities (from the features this very pass computed)."""
        import tensorflow as tf

        x = self._preprocess(tf.cast(tf.constant(pixels), tf.float32))
        with tf.GradientTape() as tape:
            conv, out = self._maps(x, training=False)
            flat = convbase.pool(out, self._pooling)
            logits = self._logits(flat)
            chosen = tf.argmax(logits, axis=1) if class_index is None else tf.fill([len(pixels)], class_index)
            score = tf.reduce_sum(tf.gather(logits, chosen, batch_dims=1))
        grads = tape.gradient(score, conv)
        cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", conv, tf.reduce_mean(grads, axis=(1, 2))))
        cam = cam / tf.maximum(tf.reduce_max(cam, axis=(1, 2), keepdims=True), 1e-12)
        size = pixels.shape[1:3]
        maps = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()
        return np.clip(maps, 0, 1), chosen.numpy(), self._probabilities(pixels, flat.numpy())

    def _probabilities(self, pixels: np.ndarray, flat: np.ndarray) -> np.ndarray:
        if self.model.takes_images:
            return self.model.predict_proba(pixels)
        return self.model.predict_proba(flat.astype(self.model.feature_metadata["dtype"]).astype(np.float32))


def last_conv_layer(base) -> str:
    """The last layer whose output is a spatial map (n, h, w, c) and that is not a pooling: VGG16's
    block5_conv3, ResNet50's conv5_block3_out, EfficientNet's top_activation."""
    import keras

    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    for layer in reversed(base.layers):
        if len(layer.output.shape) == 4 and not isinstance(layer, pooling) and not isinstance(layer, keras.layers.InputLayer):
            return layer.name
    raise CatdogError(f"{base.name} has no convolutional layer to explain")


def explain(model_dir: str, inputs: list[str], out_dir: str | None = None, class_name: str | None = None,
            weights: str | None = None, layer: str | None = None) -> list[Explanation]:
    """Heatmaps for image files and folders, each saved as OUT_DIR/NAME.cam.png (photo | overlay);
    OUT_DIR defaults to MODEL_DIR/explain."""
    out_dir = out_dir or str(storage.resolve(model_dir).join(DEFAULT_DIR))  # a URI's query stays at its end
    model = model_folder.load(model_dir)
    if class_name is not None and class_name not in model.classes:
        raise CatdogError(f"--class {class_name!r} is not one of the model's classes: {', '.join(model.classes)}")
    files, folders = imagefolder.inputs(inputs)
    files += imagefolder.files_in(folders)
    cam = GradCam(model, weights, layer)
    index = None if class_name is None else model.classes.index(class_name)
    results: list[Explanation] = []
    with storage.writable_folder(storage.resolve(out_dir)) as local:
        names = _figure_names(files)
        for start in range(0, len(files), BATCH):
            batch = files[start : start + BATCH]
            pixels = model.decode(batch)
            maps, chosen, P = cam.heatmaps(pixels, index)
            for i, file in enumerate(batch):
                k, best = int(chosen[i]), int(P[i].argmax())
                name = names[start + i]
                caption = (f"{os.path.basename(file.path)}: Grad-CAM of {model.classes[k]} (p={P[i, k]:.3f}); "
                           f"predicted {model.classes[best]}")
                figures.plot_heatmap(pixels[i], maps[i], caption, os.path.join(local, name))
                results.append(Explanation(str(file), model.classes[k], float(P[i, k]), model.classes[best], maps[i],
                                           storage.join_name(out_dir, name)))
    return results


def _figure_names(files: list[storage.Location]) -> list[str]:
    """NAME.cam.png per image; a name met again gets its position, so no figure overwrites another."""
    stems = [os.path.splitext(os.path.basename(f.path))[0] for f in files]
    counts = Counter(stems)  # once, not a count per image: folders of thousands are normal input
    return [f"{s}.cam.png" if counts[s] == 1 else f"{s}-{i}.cam.png" for i, s in enumerate(stems)]


def _head_logits(model: model_folder.ModelFolder) -> Callable:
    """A feature head as TensorFlow ops on the flat features: (n, dim) -> (n, K) logits."""
    head = model.model
    if head.kind == "dense":
        import keras

        return _dense_logits([layer for layer in head.model.layers if isinstance(layer, keras.layers.Dense)])
    scaler, linear = head.pipeline[0], head.pipeline[-1]
    mean, scale = scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)
    W, b = linear.coef_.T.astype(np.float32), linear.intercept_.astype(np.float32)
    return lambda f: _two_sided(((f - mean) / scale) @ W + b)


def _dense_logits(dense_layers: list) -> Callable:
    """Dense(relu) layers then the output layer taken before its sigmoid or softmax."""
    weights = [(np.asarray(d.kernel, np.float32), np.asarray(d.bias, np.float32)) for d in dense_layers]

    def logits(f):
        import tensorflow as tf

        for W, b in weights[:-1]:
            f = tf.nn.relu(f @ W + b)
        W, b = weights[-1]
        return _two_sided(f @ W + b)

    return logits


def _two_sided(z):
    """One sigmoid logit z as the two classes' logits (-z/2, z/2): their softmax is the sigmoid's."""
    import tensorflow as tf

    return tf.concat([-z / 2, z / 2], axis=1) if z.shape[1] == 1 else z
