"""The conv base without Ray: weights, shapes, and features equal to Keras called directly."""

import hashlib
import shutil

import keras
import numpy as np
import pytest

from catdog.config import EmbedConfig
from catdog.errors import CatdogError
from catdog.vision import convbase
from catdog.vision.layers import preprocess

pytestmark = pytest.mark.slow  # builds Keras networks


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
    base = convbase.ConvBase(weights, EmbedConfig(64, batch_size=2))  # batches of 2, 2 and 1
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
    weights = convbase.resolve_weights(weights_file, 0, 64)
    base = convbase.ConvBase(weights, EmbedConfig(64, precision=precision))
    fast = base.embed(pixels)
    # The policy is the conv base's own: its layers compute in bf16, the caller's process keeps float32.
    assert base.model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32" and keras.layers.Dense(2).dtype_policy.name == "float32"
    exact = convbase.ConvBase(weights, EmbedConfig(64)).embed(pixels)
    cosine = (fast * exact).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert fast.dtype == np.float32 and cosine.min() > 0.99


def all_weights(w) -> np.ndarray:
    return np.concatenate([x.ravel() for x in convbase.ConvBase(w, EmbedConfig(32)).model.get_weights()])


def test_random_weights_follow_the_seed():
    a, c = convbase.resolve_weights("none", 0, 32), convbase.resolve_weights("none", 1, 32)
    assert a.identity == {"source": "none", "seed": 0, "init": convbase.RANDOM_INIT}
    first, other = all_weights(a), all_weights(c)
    assert not np.allclose(first, other)
    # Keras' default initialisation: Glorot-uniform kernels within +-sqrt(6 / (fan_in + fan_out)), zero biases.
    model = convbase.ConvBase(a, EmbedConfig(32)).model
    kernel, bias = model.get_layer("block3_conv2").get_weights()
    limit = np.sqrt(6 / (9 * 256 + 9 * 256))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit and not bias.any()


def test_random_weights_are_the_same_numbers_anywhere():
    """An incremental run's new rows must match the earlier ones: the same seed gives the same numbers
    in another thread, after other code has drawn random numbers and while it draws more (numpy's
    own generator, seeded: the same in another process by construction)."""
    import random
    import threading
    from concurrent.futures import ThreadPoolExecutor

    first = all_weights(convbase.resolve_weights("none", 0, 32))
    keras.random.uniform((3,))
    keras.layers.Dense(4).build((None, 3))  # other code draws from Keras' and TensorFlow's generators
    stop = threading.Event()

    def draw():  # as Ray does while it starts beside the weights (ports, ids, names): process-wide generators
        while not stop.is_set():
            random.random()
            np.random.random()

    drawing = threading.Thread(target=draw)
    drawing.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            again = pool.submit(all_weights, convbase.resolve_weights("none", 0, 32)).result()
    finally:
        stop.set()
        drawing.join()
    np.testing.assert_array_equal(first, again)


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


def test_auto_precision_follows_the_devices():
    assert convbase.auto_precision(True, ("GenuineIntel", {"avx2"}))[0] == "fp16"
    assert convbase.auto_precision(False, ("AuthenticAMD", {"avx512f", "avx512_bf16"})) == ("bf16", "CPU with avx512_bf16")
    assert convbase.auto_precision(False, ("GenuineIntel", {"avx512_bf16", "amx_bf16"})) == ("bf16", "CPU with amx_bf16")
    # AVX512_BF16 without AMX on a Xeon: bf16 runs below fp32 there (benchmarks/throughput.py, d/b)
    assert convbase.auto_precision(False, ("GenuineIntel", {"avx512f", "avx512_bf16"}))[0] == "fp32"
    assert convbase.auto_precision(False, ("AuthenticAMD", {"avx2", "avx512f"}))[0] == "fp32"
    assert convbase.auto_precision(False, ("", set()))[0] == "fp32"


def test_cpu_reads_this_machines_vendor_and_flags():
    vendor, flags = convbase.cpu()
    with open("/proc/cpuinfo") as f:
        text = f.read()
    assert f"vendor_id\t: {vendor}\n" in text and "sse2" in flags
    assert all(f" {flag}" in text for flag in flags)


def test_default_batch_fills_a_gpu_and_shrinks_with_the_pixels():
    assert convbase.default_batch_size(150, on_gpu=False) == convbase.default_batch_size(600, on_gpu=False) == 32
    assert convbase.default_batch_size(150, on_gpu=True) == convbase.default_batch_size(224, on_gpu=True) == 256
    assert convbase.default_batch_size(448, on_gpu=True) == 64  # 4x the pixels of 224: a quarter of the batch
    assert convbase.default_batch_size(4000, on_gpu=True) == 16
