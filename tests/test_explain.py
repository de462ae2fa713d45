"""Grad-CAM heatmaps: they fall where the class is decided, and equal an independent computation.

ImageNet weights cannot be fetched here, and a randomly initialised VGG16 does not localise at
block5_conv3 (each of its cells responds to the whole 64-pixel image about equally: measured while
writing this test). So the conv base here keeps only the centre tap of every 3x3 kernel: each
block5_conv3 cell then sees exactly its own 16x16 block of the image, and where a patch lies is
known in the features, as it is for trained weights.
"""

import os

import numpy as np
import pytest
from PIL import Image

from catdog.config import ExtractConfig, HeadConfig
from catdog.extraction import extract
from catdog.heads import explain, fit_head, model_folder, models

SIZE = 64
HALF = SIZE // 2


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            centre = np.zeros_like(kernel)
            centre[1, 1] = 3.0  # x3 keeps the activations' scale with one tap of nine
            layer.set_weights([kernel * centre, bias])
    path = tmp_path_factory.mktemp("local") / "vgg16_centre_tap.weights.h5"
    model.save_weights(str(path))
    return str(path)


def marked_or_plain(marked: bool, rng: np.random.Generator) -> Image.Image:
    """A flat grey ground; 'marked' adds a black-and-white checkerboard somewhere in the top-right quadrant."""
    pixels = rng.normal(128, 3, (SIZE, SIZE, 3))
    if marked:
        side = 24
        y, x = rng.integers(0, HALF - side + 1, 2)
        yy, xx = np.mgrid[0:side, 0:side]
        pixels[y : y + side, HALF + x : HALF + x + side] = np.where(((yy // 3 + xx // 3) % 2 == 0)[..., None], 255, 0)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def quadrant(local_weights, tmp_path_factory):
    base = tmp_path_factory.mktemp("quadrant")
    rng = np.random.default_rng(0)
    for split, count in (("train", 20), ("validation", 6), ("test", 6)):
        for name in ("marked", "plain"):
            os.makedirs(base / "images" / split / name)
            for i in range(count):
                marked_or_plain(name == "marked", rng).save(base / "images" / split / name / f"{i}.png")
    config = ExtractConfig(root=str(base / "images"), out=str(base / "features"), weights=local_weights, image_size=SIZE,
                           progress=False, executor="local")
    extract.run(config)
    return config


@pytest.mark.slow
def test_the_heatmap_falls_on_the_patch_that_decides_the_class(quadrant, tmp_path):
    model_dir = str(tmp_path / "model")
    report = fit_head.run(HeadConfig(features=quadrant.out, model_dir=model_dir))
    assert report.splits["test"]["accuracy"] == 1.0
    marked = os.path.join(quadrant.root, "test", "marked")
    found = explain.explain(model_dir, [marked], str(tmp_path / "cams"))
    assert len(found) == 6
    for e in found:
        assert e.explained == "marked" and e.predicted == "marked"
        top_right = e.heatmap[:HALF, HALF:].sum() / e.heatmap.sum()
        assert top_right >= 0.6, (e.path, top_right)  # an even spread would put 0.25 there
        assert os.path.getsize(e.figure) > 0


@pytest.mark.slow
def test_heatmaps_equal_an_independent_grad_cam(quadrant, tmp_path):
    """The Keras tutorial's Grad-CAM, written here on a plain Keras model (conv base + the dense
    head's layers with the output taken before its sigmoid), gives the same maps."""
    import keras
    import tensorflow as tf

    model_dir = str(tmp_path / "dense")
    fit_head.run(HeadConfig(features=quadrant.out, model_dir=model_dir, model="dense", epochs=10, learning_rate=1e-3))
    head = model_folder.load(model_dir).model.model
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    base.load_weights(quadrant.weights)
    hidden, last = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    relu, linear = keras.layers.Dense(hidden.units, activation="relu"), keras.layers.Dense(1)
    z = linear(relu(keras.layers.Flatten()(base.output)))  # the logit of the second class, "plain"
    relu.set_weights(hidden.get_weights())
    linear.set_weights(last.get_weights())
    grad_model = keras.Model(base.inputs, [base.get_layer("block5_conv3").output, z])

    files = sorted(os.path.join(quadrant.root, "test", c, f) for c in ("marked", "plain") for f in ("0.png", "1.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    bgr = pixels[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)  # caffe preprocessing
    compared = []
    for class_name, sign in (("marked", -1.0), ("plain", 1.0)):
        expected = []
        for image in bgr:
            with tf.GradientTape() as tape:
                conv, logit = grad_model(image[None])
                score = sign * logit[:, 0] / 2
            grads = tape.gradient(score, conv)[0]
            cam = tf.nn.relu(conv[0] @ tf.reduce_mean(grads, axis=(0, 1))[:, None])[..., 0]
            cam = cam / max(float(tf.reduce_max(cam)), 1e-12)
            expected.append(tf.image.resize(cam[..., None], (SIZE, SIZE))[..., 0].numpy())
        found = explain.explain(model_dir, files, str(tmp_path / class_name), class_name=class_name)
        got = np.stack([e.heatmap for e in found])
        np.testing.assert_allclose(got, np.stack(expected), atol=2e-3)
        compared.append(got)
    assert np.max(compared) > 0  # some map is not all zero (a class's may be: Grad-CAM clips negative evidence)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_logreg_head_as_a_linear_layer_gives_its_own_probabilities(classes):
    """The logits Grad-CAM differentiates are the head's: their softmax is scikit-learn's predict_proba."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(classes)
    X = rng.normal(3, 2, (90, 20)).astype(np.float32)
    y = np.arange(90) % classes
    X[np.arange(90), y] += 4
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    model = model_folder.ModelFolder(models.LogRegHead(HeadConfig(features="", model_dir=""), pipe), {})
    logits = explain._head_logits(model)(tf.constant(X))
    assert logits.shape == (90, classes)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), pipe.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_dense_head_before_its_activation_gives_its_own_probabilities(classes):
    import keras
    import tensorflow as tf

    head = models.DenseHead(HeadConfig(features="", model_dir="", units=8))
    head.model = head.build(20, classes)
    X = np.random.default_rng(1).normal(0, 1, (30, 20)).astype(np.float32)
    dense = [layer for layer in head.model.layers if isinstance(layer, keras.layers.Dense)]
    logits = explain._dense_logits(dense)(tf.constant(X))
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), head.predict_proba(X), atol=1e-5)
