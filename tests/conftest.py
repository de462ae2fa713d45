import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def pytest_collection_modifyitems(items):
    """A test that needs the embedded Ray is slow by definition; others mark themselves."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the in-process tests; the library reuses it instead of starting its own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory):
    """A VGG16 notop weights file made here, independently of catdog, with its own seed."""
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 64, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_test_notop.weights.h5"
    model.save_weights(str(path))
    return str(path)


def save_image(path, pixels: np.ndarray, **kwargs) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return str(path)


def random_pixels(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
