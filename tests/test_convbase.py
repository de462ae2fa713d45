"""The conv base without Ray: weights, shapes, and features equal to Keras called directly."""

import hashlib
import shutil

import keras
import numpy as np
import pytest

from catdog import convbase
from catdog.config import EmbedConfig
from catdog.errors import CatdogError
from catdog.layers import preprocess


@pytest.mark.parametrize("size, side", [(150, 4), (64, 2), (32, 1), (100, 3)])
def test_feature_shape_follows_five_floor_halvings(size, side):
    assert convbase.feature_shape(size) == (side, side, 512)
    assert convbase.feature_dim(size) == side * side * 512


def test_feature_dim_matches_the_keras_model_output():
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(100, 100, 3))
    assert tuple(model.output.shape[1:]) == convbase.feature_shape(100)


def test_embed_equals_keras_predict_flattened_in_c_order(weights_file):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    weights = convbase.resolve_weights(weights_file, 0, 64)
    base = convbase.ConvBase(weights.data, EmbedConfig(64, batch_size=2))  # batches of 2, 2 and 1
    got = base.embed(pixels)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 64, 3))
    model.load_weights(weights_file)
    maps = model.predict(keras.applications.vgg16.preprocess_input(pixels.astype(np.float32)), verbose=0)
    assert got.shape == (5, 2048) and got.dtype == np.float32
    np.testing.assert_allclose(got, maps.reshape(5, -1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got[:, 1 * 1024 + 0 * 512 + 7], maps[:, 1, 0, 7], rtol=1e-4, atol=1e-3)


def test_in_graph_preprocessing_equals_keras():
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    expected = keras.applications.vgg16.preprocess_input(x.astype(np.float32))
    np.testing.assert_allclose(np.asarray(preprocess(x, "vgg16")), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(preprocess(x, "rescale")), x / 255.0, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_stays_close_to_fp32(weights_file, precision):
    pixels = np.random.default_rng(3).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    weights = convbase.resolve_weights(weights_file, 0, 64).data
    try:
        fast = convbase.ConvBase(weights, EmbedConfig(64, precision=precision)).embed(pixels)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    exact = convbase.ConvBase(weights, EmbedConfig(64)).embed(pixels)
    cosine = (fast * exact).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert fast.dtype == np.float32 and cosine.min() > 0.99


def test_random_weights_follow_the_seed():
    a, b, c = (convbase.resolve_weights("none", s, 32) for s in (0, 0, 1))
    assert a.identity == {"source": "none", "seed": 0}
    first, again, other = (convbase.ConvBase(w.data, EmbedConfig(32)).model.get_weights()[0] for w in (a, b, c))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_weights_file_identity_is_its_content(weights_file, tmp_path):
    renamed = tmp_path / "renamed.weights.h5"
    shutil.copy(weights_file, renamed)
    a, b = convbase.resolve_weights(weights_file, 0, 32), convbase.resolve_weights(str(renamed), 0, 32)
    assert a.identity["sha256"] == hashlib.sha256(open(weights_file, "rb").read()).hexdigest()
    assert a.identity["file"] != b.identity["file"] and convbase.same_weights(a.identity, b.identity)
    assert not convbase.same_weights(a.identity, convbase.resolve_weights("none", 0, 32).identity)


def test_foreign_or_missing_weights_are_refused(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    with pytest.raises(CatdogError, match="is not a VGG16 notop weights file"):
        convbase.resolve_weights(str(tmp_path / "other.weights.h5"), 0, 32)
    with pytest.raises(CatdogError, match="weights file not found"):
        convbase.resolve_weights(str(tmp_path / "nowhere.h5"), 0, 32)
