"""The conv base (VGG16, the recipe's, or any `catdog.vision.backbones` network): where its weights come
from, how it is placed on a device, how it embeds.

TensorFlow is imported inside functions only: workers that merely decode or write must not pay
its import time and memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from catdog import storage
from catdog.errors import CatdogError
from catdog.vision import backbones
from catdog.vision.layers import preprocess
from catdog.vision.settings import EmbedConfig

CHANNELS = 512
# Keras' own VGG16 "notop" file and the md5 its loader verifies (keras/src/applications/vgg16.py).
IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"  # Keras' files, by application
IMAGENET_PATH = "vgg16/" + IMAGENET_FILE  # under KERAS_APPLICATIONS, or a mirror of it
IMAGENET_URL = KERAS_APPLICATIONS + IMAGENET_PATH
IMAGENET_MD5 = "6d6bbae143d832006294945121d1f1fc"
# A mirror of KERAS_APPLICATIONS for clusters without internet: a base URL (http, https) or a folder
# holding Keras' files under the same names (vgg16/vgg16_weights_..._notop.h5). Keras still
# downloads, checks the hash and caches ($KERAS_HOME/models); only the origin differs.
MIRROR_ENV = "CATDOG_WEIGHTS_MIRROR"
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
RANDOM_INIT = "glorot-uniform-numpy"  # how --weights none draws its numbers: recorded, so other draws are refused
KERAS_POOLINGS = ("avg", "max")  # pooled by keras.applications itself
CPU_BATCH = 32  # past this a CPU gains nothing per image, and memory grows
GPU_BATCH = 256  # at up to 224 px: a few GB of fp16 activations, well within a 16-24 GB GPU
# Where bf16 is faster than fp32 (the d/b ratio of benchmarks/throughput.py): Intel with AMX, AMD
# with AVX512_BF16. An Intel Xeon with AVX512_BF16 but AMX hidden runs it well below fp32, as does any
# CPU that emulates it: the flag alone does not make bf16 the fast path.
BF16_CPUS = (("GenuineIntel", "amx_bf16"), ("AuthenticAMD", "avx512_bf16"))


@dataclass(frozen=True)
class Weights:
    """Weights resolved once on the driver: their identity (recorded with the features) and the
    Keras-native bytes shipped to every actor. --weights none has no bytes: every process that builds
    the conv base draws the same numbers from the seed, so the driver need not import TensorFlow."""

    data: bytes | None
    identity: dict


def default_batch_size(image_size: int, on_gpu: bool) -> int:
    """Images per model call when --batch-size is not given: a GPU needs large batches to be busy;
    activations grow with the pixels, so larger images get proportionally fewer."""
    if not on_gpu:
        return CPU_BATCH
    return int(max(16, min(GPU_BATCH, GPU_BATCH * (224 / image_size) ** 2)))


def auto_precision(on_gpu: bool, cpu: tuple[str, set[str]]) -> tuple[str, str]:
    """--precision auto: the fast path of the devices the actors get, and why. `cpu` is the
    (vendor, flags) of /proc/cpuinfo."""
    if on_gpu:
        return "fp16", "GPU actors"
    vendor, flags = cpu
    found = next((flag for who, flag in BF16_CPUS if who == vendor and flag in flags), None)
    if found:
        return "bf16", f"CPU with {found}"
    return "fp32", "CPU with no fast bf16 path"


def cpu() -> tuple[str, set[str]]:
    """This machine's CPU vendor and flags, from /proc/cpuinfo (empty off Linux: no bf16 claim)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line.split(":", 1) for line in f if line.startswith(("vendor_id", "flags"))]
    except OSError:
        return "", set()
    fields = {key.strip(): value.split() for key, value in lines[:2]}
    return " ".join(fields.get("vendor_id", [])), set(fields.get("flags", []))


def feature_shape(image_size: int, backbone: str = backbones.DEFAULT, pooling: str = "flatten") -> tuple[int, ...]:
    """The shape of one image's features: the conv map (flatten) or its channels (pooled)."""
    if backbone in ("vgg16", "vgg19"):
        side = image_size
        for _ in range(5):  # VGG's five 2x2/stride-2 'valid' max-poolings floor the side each time
            side //= 2
        shape = (side, side, CHANNELS)
    else:  # the network itself says (built once per process and size, without weights)
        shape = _map_shape(backbone, image_size)
    return shape if pooling == "flatten" else shape[-1:]


def feature_dim(image_size: int, backbone: str = backbones.DEFAULT, pooling: str = "flatten") -> int:
    return int(np.prod(feature_shape(image_size, backbone, pooling)))


@functools.cache
def _map_shape(backbone: str, image_size: int) -> tuple[int, int, int]:
    import keras

    return tuple(network(keras, backbone, image_size, None).output.shape[1:])


def resolve_weights(source: str, seed: int, image_size: int, backbone: str = backbones.DEFAULT,
                    pooling: str = "flatten", mirror: str | None = None) -> Weights:
    """Fetch or build the conv base weights on the driver, failing here rather than in a worker.

    `source` is "imagenet" (through Keras' own download and hash check; from `mirror`, else
    $CATDOG_WEIGHTS_MIRROR, else Keras' own address), "none" (random init from `seed`, drawn where
    the model is built) or a path/URI of a notop weights file of the backbone.
    """
    named = {} if backbone == backbones.DEFAULT else {"backbone": backbone}  # VGG16's identities stay as they were
    if source == "none":
        return Weights(None, {"source": "none", "seed": seed, "init": RANDOM_INIT, **named})
    import keras

    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if source == "imagenet" and backbone == backbones.DEFAULT:
        origin = imagenet_origin(mirror)
        path = _download_imagenet(keras, origin)
        identity = {"source": "imagenet", "file": IMAGENET_FILE, **({"origin": origin} if mirror else {})}
    elif source == "imagenet" and mirror:
        raise CatdogError(f"--weights-mirror serves VGG16's file; Keras downloads {backbone}'s from its own address. "
                          f"Put Keras' file for {backbone} in $KERAS_HOME/models, or pass --weights PATH")
    elif source == "imagenet":
        try:  # Keras downloads the file its application names and checks its hash
            model = network(keras, backbone, image_size, "imagenet", pooling)
        except Exception as exc:
            raise _unavailable(backbone, exc) from None
        data = _weights_bytes(model)
        return Weights(data, {"source": "imagenet", **named, "sha256": _arrays_sha256(model)})
    else:
        path = _local_copy(source)
        identity = {"source": "file", "file": os.path.basename(source), **named}
    identity["sha256"] = _sha256(path)
    try:
        with warnings.catch_warnings():
            # Keras only warns when a .weights.h5 file lacks some layers, keeping their random init.
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", message=".*input_shape.*")  # MobileNet's note on non-default sizes
            model = network(keras, backbone, image_size, path, pooling)
    except Exception as exc:  # Keras raises ValueError, KeyError or OSError for a foreign file
        what = backbones.get(backbone).keras_name
        raise CatdogError(f"--weights {source} is not a {what} notop weights file "
                          f"({' '.join(str(exc).split())[:200]})") from None
    return Weights(_weights_bytes(model), identity)


def build(weights: Weights, image_size: int, backbone: str = backbones.DEFAULT, pooling: str = "flatten"):
    """The conv base with these weights, under the current Keras precision policy."""
    import keras

    if weights.data is None:
        return _random_network(keras, backbone, image_size, weights.identity["seed"], pooling)
    model = network(keras, backbone, image_size, None, pooling)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notop.weights.h5")
        with open(path, "wb") as f:
            f.write(weights.data)
        model.load_weights(path)
    return model


def network(keras, backbone: str, image_size: int, weights: str | None, pooling: str = "flatten"):
    """keras.applications' network, without its top, for square inputs of `image_size`; avg and max
    pooling are the application's own (ConvNeXt's adds its head's layer norm), flatten and gem are
    applied to its maps by `pool`."""
    constructor = getattr(keras.applications, backbones.get(backbone).keras_name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input_shape.*")  # MobileNet's note on non-default sizes
        return constructor(weights=weights, include_top=False, input_shape=(image_size, image_size, 3),
                           pooling=pooling if pooling in KERAS_POOLINGS else None)


def _unavailable(backbone: str, exc: Exception) -> CatdogError:
    return CatdogError(f"cannot get the ImageNet weights of {backbone} through Keras ({str(exc).splitlines()[0]}). "
                       f"Fetch them where there is internet (keras.applications.{backbones.get(backbone).keras_name}"
                       "(weights='imagenet', include_top=False) caches them in ~/.keras/models) and pass --weights "
                       "PATH, or use --weights none for random weights")


WHERE_FROM = ("file", "origin")  # where a weights file was found, not what it holds


def same_weights(a: dict, b: dict) -> bool:
    """Two weights identities name the same numbers (a file may be renamed, moved or mirrored)."""
    return {k: v for k, v in a.items() if k not in WHERE_FROM} == {k: v for k, v in b.items() if k not in WHERE_FROM}


def imagenet_origin(mirror: str | None) -> str:
    """Where VGG16's ImageNet file is downloaded from: Keras' address, or its place in a mirror."""
    if not mirror:
        return IMAGENET_URL
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + IMAGENET_PATH
    folder = os.path.abspath(os.path.expanduser(mirror))
    if not os.path.isdir(folder):
        raise CatdogError(f"--weights-mirror {mirror} is neither a URL nor a folder")
    return "file://" + os.path.join(folder, IMAGENET_PATH)


def _download_imagenet(keras, origin: str) -> str:
    """Keras' get_file: downloaded once into $KERAS_HOME/models (~/.keras), its md5 checked, the
    cached copy used while its hash matches."""
    home = os.environ.get("KERAS_HOME")  # read now, as Keras reads it at its import (and makes it)
    try:
        if home:
            os.makedirs(home, exist_ok=True)
        return keras.utils.get_file(IMAGENET_FILE, origin, cache_subdir="models", file_hash=IMAGENET_MD5, cache_dir=home)
    except Exception as exc:
        raise CatdogError(
            f"cannot get the ImageNet weights from {origin} ({' '.join(str(exc).split())[:200]}). Download "
            f"{IMAGENET_URL} where there is internet and pass --weights PATH (or serve it from a mirror: "
            f"--weights-mirror, ${MIRROR_ENV}), or use --weights none for random weights"
        ) from None


def _local_copy(source: str) -> str:
    file = storage.resolve(source)
    if not file.exists():
        raise CatdogError(f"weights file not found: {source}")
    if file.is_local:
        return file.path
    suffix = ".weights.h5" if file.path.endswith(".weights.h5") else os.path.splitext(file.path)[1]
    handle, local = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(handle, "wb") as out:
        out.write(file.read_bytes())
    return local


def keras_version() -> str:
    from importlib.metadata import (
        version,  # the installed package's version, without importing TensorFlow
    )

    return version("keras")


KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _random_network(keras, backbone: str, image_size: int, seed: int, pooling: str = "flatten"):
    """The network with Keras' default initialisation — Glorot-uniform kernels, zero biases, the
    constants Keras starts everything else with (batch norm, layer scale, built-in preprocessing) —
    the kernels drawn from numpy's Generator(seed), layer by layer and in order: the same numbers in
    every process and thread.

    Not keras.utils.set_random_seed: Keras' seeding is global state that other code in the process
    advances, and two runs over one OUT got different weights (an incremental run's new rows did not
    match the earlier ones).
    """
    model = network(keras, backbone, image_size, None, pooling)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not any(v.name in KERNELS for v in layer.weights):
            continue
        values = []
        for variable, value in zip(layer.weights, layer.get_weights()):
            if variable.name in KERNELS:
                fan_in, fan_out = np.prod(value.shape[:-1]), np.prod(value.shape[:-2]) * value.shape[-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                value = rng.uniform(-limit, limit, value.shape).astype(np.float32)
            elif variable.name == "bias":
                value = np.zeros_like(value)
            values.append(value)
        layer.set_weights(values)
    return model


def _arrays_sha256(model) -> str:
    """The weights' own numbers, hashed: the same for the same weights however the file was written."""
    digest = hashlib.sha256()
    for value in model.get_weights():
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _weights_bytes(model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notop.weights.h5")
        model.save_weights(path)
        with open(path, "rb") as f:
            return f.read()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def configure_devices(cpus: float, inter_op_threads: int = 1) -> dict:
    """Set TensorFlow's threads from the CPU allotment and turn on GPU memory growth.

    Must run before TensorFlow executes anything in this process. On a cluster Ray has already
    narrowed CUDA_VISIBLE_DEVICES to the GPU ids it assigned, so TensorFlow sees only those.
    """
    import tensorflow as tf

    intra = max(1, int(round(cpus)))
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    gpus = tf_gpus()
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "tf_gpus": [g.name for g in gpus],
        "memory_growth": all(tf.config.experimental.get_memory_growth(g) for g in gpus),
        "intra_op_threads": intra,
        "inter_op_threads": inter_op_threads,
    }


def tf_gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


class ConvBase:
    """One loaded conv base that turns uint8 pixels into features: its map flattened, or pooled."""

    def __init__(self, weights: Weights, config: EmbedConfig) -> None:

        with dtype_policy(POLICIES[config.precision]):
            self.model = build(weights, config.image_size, config.backbone, config.pooling)
        self.config = config
        shape = tuple(self.model.output.shape[1:])
        self.dim = int(np.prod(shape if config.pooling == "flatten" else shape[-1:]))
        on_gpu = bool(tf_gpus())
        self.batch_size = config.batch_size or default_batch_size(config.image_size, on_gpu)
        self._features = _compiled_features(self.model, config)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 -> (n, dim) float32: the conv output flattened in C order."""
        out = np.empty((len(pixels), self.dim), dtype=np.float32)
        step = self.batch_size
        for start in range(0, len(pixels), step):
            out[start : start + step] = self._features(pixels[start : start + step]).numpy()
        return out


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' dtype policy for the layers built inside, and the caller's back afterwards: each layer
    keeps the policy it was built with, and the caller's own models are not turned mixed-precision.
    (Keras holds the policy per thread.)"""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _compiled_features(model, config: EmbedConfig):
    """uint8 pixels -> preprocessing -> conv base -> float32 flat features, as one traced graph.

    Called through tf.function rather than predict_on_batch, whose per-call machinery costs time on
    every batch. One fixed signature, so the last, shorter batch does not retrace.
    """
    import tensorflow as tf

    size, mode = config.image_size, config.preprocess

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)], autograph=False)  # no Python control flow to convert
    def features(pixels):
        return pool(model(preprocess(pixels, mode), training=False), config.pooling)

    return features


def pool(maps, pooling: str):
    """(n, h, w, c) conv maps -> (n, dim) float32 features: flattened in C order, or pooled over space
    (gem: the generalized mean with p = backbones.GEM_P, of the maps clipped at 1e-6)."""
    import tensorflow as tf

    maps = tf.cast(maps, tf.float32)
    if len(maps.shape) == 2:  # pooled by the network itself (avg, max)
        return maps
    if pooling == "flatten":
        return tf.reshape(maps, [tf.shape(maps)[0], -1])
    if pooling == "avg":
        return tf.reduce_mean(maps, axis=[1, 2])
    if pooling == "max":
        return tf.reduce_max(maps, axis=[1, 2])
    p = backbones.GEM_P
    return tf.pow(tf.reduce_mean(tf.pow(tf.maximum(maps, 1e-6), p), axis=[1, 2]), 1.0 / p)
